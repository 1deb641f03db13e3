//! Decoding a full page of 250 leads, as `GET /api/v4/leads?with=contacts&limit=250` returns it.
//!
//! Run: `cargo bench -p amocrm-client --bench decode`

use amocrm_client::{Lead, decode_list};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use serde_json::{Value, json};

fn custom_fields(i: u64) -> Value {
    json!([
        {"field_id": 1278898021, "field_name": "Дата выдачи", "field_code": null, "field_type": "date",
         "values": [{"value": 1717642800 + i * 86400}]},
        {"field_id": 1278898023, "field_name": "Дата возврата", "field_code": null, "field_type": "date_time",
         "values": [{"value": 1717729200 + i * 86400}]},
        {"field_id": 1278898087, "field_name": "Тариф", "field_code": "TARIFF", "field_type": "select",
         "values": [{"value": "Премиум", "enum_id": 4035, "enum_code": null}]},
        {"field_id": 1278898091, "field_name": "Опции", "field_code": null, "field_type": "multiselect",
         "values": [{"value": "Детское кресло", "enum_id": 4041}, {"value": "GPS", "enum_id": 4043}]},
        {"field_id": 1278898095, "field_name": "Номер брони RentProg", "field_code": null, "field_type": "text",
         "values": [{"value": format!("RP-{}", 700000 + i)}]},
        {"field_id": 1278898097, "field_name": "Автомобиль", "field_code": null, "field_type": "text",
         "values": [{"value": "Hyundai Solaris, белый, А123ВС777"}]},
        {"field_id": 1278898099, "field_name": "Залог", "field_code": null, "field_type": "numeric",
         "values": [{"value": "15000"}]},
        {"field_id": 1278898101, "field_name": "Источник", "field_code": "UTM_SOURCE", "field_type": "tracking_data",
         "values": [{"value": "yandex"}]},
        {"field_id": 1278898103, "field_name": "Комментарий", "field_code": null, "field_type": "textarea",
         "values": [{"value": "Клиент просил подать машину к терминалу B, рейс задерживается на 40 минут."}]},
        {"field_id": 1278898105, "field_name": "Оплачено", "field_code": null, "field_type": "checkbox",
         "values": [{"value": i.is_multiple_of(2)}]}
    ])
}

fn lead(i: u64) -> Value {
    let id = 30_000_000 + i;
    let contacts: Vec<Value> = (0..1 + i % 3)
        .map(|c| {
            let contact = 50_000_000 + i * 3 + c;
            json!({"id": contact, "is_main": c == 0,
                   "_links": {"self": {"href": format!("https://geodrive.amocrm.ru/api/v4/contacts/{contact}")}}})
        })
        .collect();
    json!({
        "id": id, "name": format!("Аренда #{id}"), "price": 12000 + i * 10,
        "responsible_user_id": 504141, "group_id": 0, "status_id": 32392159, "pipeline_id": 3177727,
        "loss_reason_id": null, "created_by": 504141, "updated_by": 0,
        "created_at": 1717000000 + i, "updated_at": 1717600000 + i, "closed_at": null,
        "closest_task_at": 1717700000, "is_deleted": false, "custom_fields_values": custom_fields(i),
        "score": null, "account_id": 28805383, "labor_cost": null,
        "_links": {"self": {"href": format!("https://geodrive.amocrm.ru/api/v4/leads/{id}")}},
        "_embedded": {
            "tags": [{"id": 1252595, "name": "сайт", "color": null}],
            "companies": [],
            "contacts": contacts
        }
    })
}

fn page() -> Vec<u8> {
    let leads: Vec<Value> = (0..250).map(lead).collect();
    serde_json::to_vec(&json!({
        "_page": 1,
        "_links": {
            "self": {"href": "https://geodrive.amocrm.ru/api/v4/leads?with=contacts&limit=250&page=1"},
            "next": {"href": "https://geodrive.amocrm.ru/api/v4/leads?with=contacts&limit=250&page=2"}
        },
        "_embedded": {"leads": leads}
    }))
    .unwrap()
}

fn decode(c: &mut Criterion) {
    let body = page();
    let mut group = c.benchmark_group("decode_250_leads");
    group.throughput(Throughput::Bytes(body.len() as u64));
    group.bench_function("typed_with_raw", |b| {
        b.iter(|| {
            let leads = decode_list::<Lead>(std::hint::black_box(&body)).unwrap();
            assert_eq!(leads.len(), 250);
            leads
        })
    });
    // Baseline: parsing the same bytes into an untyped tree only.
    group.bench_function("serde_json_value_only", |b| {
        b.iter(|| serde_json::from_slice::<Value>(std::hint::black_box(&body)).unwrap())
    });
    group.finish();
    eprintln!("page size: {} bytes", body.len());
}

criterion_group!(benches, decode);
criterion_main!(benches);
