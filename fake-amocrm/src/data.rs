//! Generated, realistic-looking car-rental CRM data (Russian names, RentProg ids).

use rand::Rng;
use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use serde_json::{Value, json};

pub const PIPELINE_ID: u64 = 7_401_234;
/// Open stages of the pipeline, then the system "won" (142) and "lost" (143) stages.
pub const STATUSES: [u64; 6] = [61_208_752, 61_208_755, 61_208_758, 61_208_761, 142, 143];
pub const USERS: [u64; 4] = [8_215_487, 8_215_490, 8_215_493, 8_215_496];

pub const FIELD_RENTPROG_ID: u64 = 771_001;
pub const FIELD_CAR_CLASS: u64 = 771_002;
pub const FIELD_RENT_START: u64 = 771_003;
pub const FIELD_PHONE: u64 = 640_101;
pub const FIELD_EMAIL: u64 = 640_103;
const ENUM_PHONE_WORK: u64 = 331_001;
const ENUM_EMAIL_WORK: u64 = 331_011;

/// Seeded data is anchored to a fixed instant so that two processes given the
/// same seed (a `serve` and a `send`) hold identical leads.
pub const EPOCH: i64 = 1_760_000_000;

const CAR_CLASSES: [(u64, &str); 5] = [
    (551_201, "Эконом"),
    (551_202, "Комфорт"),
    (551_203, "Бизнес"),
    (551_204, "Внедорожник"),
    (551_205, "Минивэн"),
];
const CARS: [&str; 10] = [
    "Kia Rio",
    "Hyundai Solaris",
    "Volkswagen Polo",
    "Skoda Octavia",
    "Toyota Camry",
    "Kia Sportage",
    "Renault Duster",
    "Lada Vesta",
    "Hyundai Creta",
    "Mercedes-Benz E-Class",
];
const TAGS: [(u64, &str); 5] = [
    (80_147, "сайт"),
    (80_148, "повторный"),
    (80_149, "Telegram"),
    (80_150, "Авито"),
    (80_151, "VIP"),
];
/// (first name, transliteration, is female)
const FIRST: [(&str, &str, bool); 12] = [
    ("Иван", "ivan", false),
    ("Алексей", "aleksey", false),
    ("Дмитрий", "dmitry", false),
    ("Сергей", "sergey", false),
    ("Никита", "nikita", false),
    ("Артём", "artem", false),
    ("Мария", "maria", true),
    ("Ольга", "olga", true),
    ("Анна", "anna", true),
    ("Екатерина", "ekaterina", true),
    ("Татьяна", "tatiana", true),
    ("Юлия", "yulia", true),
];
/// (masculine, feminine, transliteration)
const LAST: [(&str, &str, &str); 10] = [
    ("Петров", "Петрова", "petrov"),
    ("Иванов", "Иванова", "ivanov"),
    ("Смирнов", "Смирнова", "smirnov"),
    ("Кузнецов", "Кузнецова", "kuznetsov"),
    ("Соколов", "Соколова", "sokolov"),
    ("Попов", "Попова", "popov"),
    ("Лебедев", "Лебедева", "lebedev"),
    ("Новиков", "Новикова", "novikov"),
    ("Морозов", "Морозова", "morozov"),
    ("Волков", "Волкова", "volkov"),
];
const MAIL_DOMAINS: [&str; 4] = ["mail.ru", "yandex.ru", "gmail.com", "example.ru"];
const NOTES: [&str; 6] = [
    "Клиент подтвердил бронь, оплата при получении",
    "Перезвонить завтра после 12:00",
    "Нужно детское кресло",
    "Скидка 10% как постоянному клиенту",
    "Отправил договор на e-mail",
    "Просит подачу авто в аэропорт Пулково",
];

pub fn lead(rng: &mut StdRng, id: u64, account_id: u64, contacts: &[(u64, bool)]) -> Value {
    let car = CARS.choose(rng).copied().unwrap_or("Kia Rio");
    let day = rng.random_range(1..=25u32);
    let month = rng.random_range(1..=12u32);
    let len = rng.random_range(1..=6u32);
    let name = format!(
        "Аренда {car} {day:02}.{month:02}–{:02}.{month:02}",
        day + len
    );
    let created_at = EPOCH + rng.random_range(0..4_000_000);
    let updated_at = created_at + rng.random_range(0..200_000);
    let status_id = *STATUSES.choose(rng).unwrap_or(&STATUSES[0]);
    let closed_at = if status_id == 142 || status_id == 143 {
        json!(updated_at)
    } else {
        Value::Null
    };
    let creator = *USERS.choose(rng).unwrap_or(&USERS[0]);
    let mut fields = vec![json!({
        "field_id": FIELD_RENTPROG_ID,
        "field_name": "RentProg ID",
        "field_code": null,
        "field_type": "text",
        "values": [{"value": format!("RP-{}", rng.random_range(10_000..100_000))}],
    })];
    if rng.random_bool(0.9) {
        let (enum_id, value) = *CAR_CLASSES.choose(rng).unwrap_or(&CAR_CLASSES[0]);
        fields.push(json!({
            "field_id": FIELD_CAR_CLASS,
            "field_name": "Класс авто",
            "field_code": null,
            "field_type": "select",
            "values": [{"value": value, "enum_id": enum_id, "enum_code": null}],
        }));
    }
    if rng.random_bool(0.5) {
        fields.push(json!({
            "field_id": FIELD_RENT_START,
            "field_name": "Дата начала аренды",
            "field_code": null,
            "field_type": "date",
            "values": [{"value": created_at + 86_400 * i64::from(len)}],
        }));
    }
    let tag_count = rng.random_range(0..=2usize);
    let tags: Vec<Value> = TAGS
        .choose_multiple(rng, tag_count)
        .map(|(id, name)| json!({"id": id, "name": name, "color": null}))
        .collect();
    let contacts: Vec<Value> = contacts
        .iter()
        .map(|(id, main)| json!({"id": id, "is_main": main}))
        .collect();
    json!({
        "id": id,
        "name": name,
        "price": rng.random_range(3..60u32) * 500,
        "responsible_user_id": USERS.choose(rng).copied().unwrap_or(USERS[0]),
        "group_id": 0,
        "status_id": status_id,
        "pipeline_id": PIPELINE_ID,
        "loss_reason_id": null,
        "created_by": creator,
        "updated_by": USERS.choose(rng).copied().unwrap_or(creator),
        "created_at": created_at,
        "updated_at": updated_at,
        "closed_at": closed_at,
        "closest_task_at": null,
        "is_deleted": false,
        "custom_fields_values": fields,
        "score": null,
        "account_id": account_id,
        "labor_cost": null,
        "_embedded": {"tags": tags, "companies": [], "contacts": contacts},
    })
}

pub fn contact(rng: &mut StdRng, id: u64, account_id: u64) -> Value {
    let (first, first_lat, female) = *FIRST.choose(rng).unwrap_or(&FIRST[0]);
    let (last_m, last_f, last_lat) = *LAST.choose(rng).unwrap_or(&LAST[0]);
    let last = if female { last_f } else { last_m };
    let digits: u64 = rng.random_range(9_000_000_000..10_000_000_000);
    // Phones are typed by hand in the CRM, so the format varies.
    let phone = if rng.random_bool(0.5) {
        format!("+7{digits}")
    } else {
        let d = digits.to_string();
        format!("+7 ({}) {}-{}-{}", &d[0..3], &d[3..6], &d[6..8], &d[8..10])
    };
    let email = format!(
        "{first_lat}.{last_lat}{}@{}",
        rng.random_range(1..100u32),
        MAIL_DOMAINS.choose(rng).unwrap_or(&MAIL_DOMAINS[0])
    );
    let created_at = EPOCH + rng.random_range(0..4_000_000);
    let user = *USERS.choose(rng).unwrap_or(&USERS[0]);
    json!({
        "id": id,
        "name": format!("{first} {last}"),
        "first_name": first,
        "last_name": last,
        "responsible_user_id": user,
        "group_id": 0,
        "created_by": user,
        "updated_by": user,
        "created_at": created_at,
        "updated_at": created_at + rng.random_range(0..100_000),
        "closest_task_at": null,
        "is_deleted": false,
        "is_unsorted": false,
        "custom_fields_values": [
            {
                "field_id": FIELD_PHONE,
                "field_name": "Телефон",
                "field_code": "PHONE",
                "field_type": "multitext",
                "values": [{"value": phone, "enum_id": ENUM_PHONE_WORK, "enum_code": "WORK"}],
            },
            {
                "field_id": FIELD_EMAIL,
                "field_name": "Email",
                "field_code": "EMAIL",
                "field_type": "multitext",
                "values": [{"value": email, "enum_id": ENUM_EMAIL_WORK, "enum_code": "WORK"}],
            },
        ],
        "account_id": account_id,
        "_embedded": {"tags": [], "companies": []},
    })
}

pub fn note(
    rng: &mut StdRng,
    id: u64,
    entity_id: u64,
    account_id: u64,
    text: Option<&str>,
    at: i64,
) -> Value {
    let user = *USERS.choose(rng).unwrap_or(&USERS[0]);
    let text = text
        .map(str::to_owned)
        .unwrap_or_else(|| NOTES.choose(rng).unwrap_or(&NOTES[0]).to_string());
    json!({
        "id": id,
        "entity_id": entity_id,
        "created_by": user,
        "updated_by": user,
        "created_at": at,
        "updated_at": at,
        "responsible_user_id": user,
        "group_id": 0,
        "note_type": "common",
        "params": {"text": text},
        "account_id": account_id,
    })
}
