//! Every way a body is refused, with what and where.

mod support;

use amocrm_webhook::{Error, Limits, Parser, parse_form, parse_json};
use support::amo;

fn limited(max_body_bytes: usize, max_keys: usize, max_depth: usize) -> Parser {
    Parser::new(Limits {
        max_body_bytes,
        max_keys,
        max_depth,
    })
}

#[test]
fn default_limits() {
    assert_eq!(
        Limits::default(),
        Limits {
            max_body_bytes: 1024 * 1024,
            max_keys: 10_000,
            max_depth: 16
        }
    );
}

#[test]
fn body_too_large() {
    let body = amo("leads[add][0][id]=12345");
    let err = limited(10, 100, 16).parse_form(&body).unwrap_err();
    assert_eq!(
        err,
        Error::BodyTooLarge {
            size: body.len(),
            limit: 10
        }
    );
    assert!(err.is_too_large());
    assert!(!err.is_unsupported_content_type());
    assert_eq!(
        err.to_string(),
        format!("body is {} bytes, over the limit of 10 bytes", body.len())
    );
    let err = limited(10, 100, 16)
        .parse_json(br#"{"leads":{"add":[{"id":"1"}]}}"#)
        .unwrap_err();
    assert!(err.is_too_large());
    assert!(limited(body.len(), 100, 16).parse_form(&body).is_ok());

    let huge = vec![b'a'; 1024 * 1024 + 1];
    assert!(parse_form(&huge).unwrap_err().is_too_large());
}

#[test]
fn too_many_keys() {
    let body = amo("leads[add][0][id]=1&leads[add][0][a]=2&leads[add][0][b]=3");
    assert_eq!(
        limited(1000, 2, 16).parse_form(&body).unwrap_err(),
        Error::TooManyKeys { limit: 2 }
    );
    assert!(limited(1000, 3, 16).parse_form(&body).is_ok());
    // Empty pairs do not count.
    assert!(
        limited(1000, 3, 16)
            .parse_form(&[body.as_slice(), b"&&"].concat())
            .is_ok()
    );
    let json = br#"{"leads":{"add":[{"id":"1","a":"2","b":"3"}]}}"#;
    assert_eq!(
        limited(1000, 2, 16).parse_json(json).unwrap_err(),
        Error::TooManyKeys { limit: 2 }
    );

    let flat: String = (0..10_001).map(|i| format!("k{i}=1&")).collect();
    assert_eq!(
        parse_form(flat.as_bytes()).unwrap_err(),
        Error::TooManyKeys { limit: 10_000 }
    );
}

#[test]
fn too_deep() {
    let err = limited(1000, 100, 3)
        .parse_form(&amo("leads[add][0][id]=1"))
        .unwrap_err();
    assert_eq!(
        err,
        Error::TooDeep {
            key: "leads[add][0][id]".into(),
            depth: 4,
            limit: 3
        }
    );
    assert_eq!(
        err.to_string(),
        "key `leads[add][0][id]` has 4 segments, over the limit of 3"
    );
    let deep = format!("a{}=1", "[x]".repeat(16));
    assert!(matches!(
        parse_form(deep.as_bytes()),
        Err(Error::TooDeep {
            depth: 17,
            limit: 16,
            ..
        })
    ));
    let ok = format!("a{}[0][id]=1", "[x]".repeat(0));
    assert!(parse_form(ok.as_bytes()).is_ok());
    let json = br#"{"leads":{"add":[{"id":"1"}]}}"#;
    assert!(matches!(
        limited(1000, 100, 3).parse_json(json),
        Err(Error::TooDeep {
            depth: 4,
            limit: 3,
            ..
        })
    ));
}

#[test]
fn error_messages_quote_long_keys_shortly() {
    let long = format!("{}[a][b]=1", "k".repeat(5000));
    let err = limited(100_000, 100, 2)
        .parse_form(long.as_bytes())
        .unwrap_err();
    assert!(err.to_string().len() < 400, "{err}");
}

#[test]
fn invalid_percent_encoding_gives_the_offset() {
    let body = b"leads%5Badd%5D%5B0%5D%5Bid%5D=1&leads%5Badd%5D%5B0%5D%5Bname%5D=a%ZZ";
    let offset = body.len() - 3;
    assert_eq!(
        parse_form(body).unwrap_err(),
        Error::InvalidPercentEncoding { offset }
    );
    assert_eq!(
        parse_form(b"a%5").unwrap_err(),
        Error::InvalidPercentEncoding { offset: 1 }
    );
    assert_eq!(
        parse_form(b"a%5Bb%5D=1&x=%").unwrap_err().to_string(),
        "invalid percent-encoding at byte 13"
    );
}

#[test]
fn invalid_utf8_names_the_place() {
    let err = parse_form(b"leads%5Badd%5D%5B0%5D%5Bname%5D=%FF%FE").unwrap_err();
    assert_eq!(
        err,
        Error::InvalidUtf8 {
            offset: 32,
            key: Some("leads[add][0][name]".into())
        }
    );
    assert_eq!(
        err.to_string(),
        "invalid UTF-8 in the value of `leads[add][0][name]` starting at byte 32"
    );
    assert_eq!(
        parse_form(b"x=1&le%C3ads=1").unwrap_err(),
        Error::InvalidUtf8 {
            offset: 4,
            key: None
        }
    );
    // Raw (not escaped) bytes are checked too.
    assert!(matches!(
        parse_form(b"a=\xff"),
        Err(Error::InvalidUtf8 { offset: 2, .. })
    ));
}

#[test]
fn malformed_keys() {
    for (body, offset) in [
        (&b"leads[add][0][id]=1&[x]=1"[..], 20),
        (b"=1", 0),
        (b"leads[add[0]=1", 0),
        (b"leads[add]x=1", 0),
        (b"a=1&leads[add][0][id=1", 4),
    ] {
        match parse_form(body) {
            Err(Error::MalformedKey { offset: at, .. }) => {
                assert_eq!(at, offset, "{}", String::from_utf8_lossy(body))
            }
            other => panic!("{}: {other:?}", String::from_utf8_lossy(body)),
        }
    }
    let err = parse_form(b"leads%5Badd").unwrap_err();
    assert_eq!(
        err.to_string(),
        "malformed key `leads[add` at byte 0: `[` without a closing `]`"
    );
}

#[test]
fn invalid_json() {
    assert!(matches!(
        parse_json(b"{\"leads\": "),
        Err(Error::InvalidJson(_))
    ));
    let err = parse_json(b"[1,2]").unwrap_err();
    assert_eq!(
        err,
        Error::InvalidJson("the top level is not an object".into())
    );
    let err = parse_json(b"{\"a\":1,}").unwrap_err();
    assert!(err.to_string().contains("line 1 column"), "{err}");
    let nested = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    assert!(matches!(
        parse_json(format!("{{\"a\":{nested}}}").as_bytes()),
        Err(Error::InvalidJson(_))
    ));
}

#[test]
fn no_events() {
    assert_eq!(parse_form(b"").unwrap_err(), Error::NoEvents);
    assert_eq!(parse_form(b"&&&").unwrap_err(), Error::NoEvents);
    assert_eq!(
        parse_form(&amo("account[id]=1&account[subdomain]=x")).unwrap_err(),
        Error::NoEvents
    );
    assert_eq!(
        parse_form(&amo("leads[add]=1&foo=2")).unwrap_err(),
        Error::NoEvents
    );
    assert_eq!(parse_json(b"{}").unwrap_err(), Error::NoEvents);
    assert_eq!(
        parse_json(br#"{"leads":{"add":[]}}"#).unwrap_err(),
        Error::NoEvents
    );
    assert_eq!(Error::NoEvents.to_string(), "body carries no events");
}

#[test]
fn unsupported_content_type() {
    let parser = Parser::default();
    for content_type in [
        "text/plain",
        "multipart/form-data; boundary=x",
        "application/xml",
        "",
    ] {
        let err = parser
            .parse(Some(content_type), &amo("leads[add][0][id]=1"))
            .unwrap_err();
        assert_eq!(err, Error::UnsupportedContentType(content_type.into()));
        assert!(err.is_unsupported_content_type());
        assert!(!err.is_too_large());
    }
    assert_eq!(
        Error::UnsupportedContentType("text/plain".into()).to_string(),
        "unsupported content type `text/plain`"
    );
}
