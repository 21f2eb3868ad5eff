//! Error classes: known ones matched whatever their escapes, unknown ones kept
//! by name, borrowed from a reply or owned.

use qmp_proto::{Client, ClientConfig, ErrorClass, Heap, Output, Reply};

const GREETING: &[u8] = b"{\"QMP\": {\"version\": {\"qemu\": {\"micro\": 0, \"minor\": 2, \"major\": 7}, \"package\": \"\"}, \"capabilities\": []}}\r\n{\"return\": {}, \"id\": 0}\r\n";

/// The class of an error reply with `class` as its raw JSON text: as parsed,
/// its `as_str`, its `Display`, and owned.
fn class_of(class: &str) -> (String, String, ErrorClass<String>) {
    let mut client: Client<Heap> = Client::new(ClientConfig::default());
    assert_eq!(client.receive(GREETING), Ok(GREETING.len()));
    while client.poll_output().is_some() {}
    let id = client.send_command_raw("x", None).unwrap();
    let reply =
        format!("{{\"error\": {{\"class\": \"{class}\", \"desc\": \"d\"}}, \"id\": {id}}}\r\n");
    assert_eq!(client.receive(reply.as_bytes()), Ok(reply.len()));
    match client.poll_output() {
        Some(Output::Reply {
            reply: Reply::Error(e),
            ..
        }) => (
            e.class.as_str().to_owned(),
            e.class.to_string(),
            e.class.into_owned(),
        ),
        other => panic!("{other:?}"),
    }
}

#[test]
fn known_classes_are_matched_escaped_or_not() {
    assert_eq!(
        class_of("DeviceNotFound"),
        (
            "DeviceNotFound".to_owned(),
            "DeviceNotFound".to_owned(),
            ErrorClass::DeviceNotFound
        )
    );
    assert_eq!(class_of("KVMMissingCap").2, ErrorClass::KvmMissingCap);
    assert_eq!(
        class_of("Generic\\u0045rror"),
        (
            "GenericError".to_owned(),
            "GenericError".to_owned(),
            ErrorClass::GenericError
        )
    );
}

#[test]
fn unknown_classes_are_kept_by_name() {
    assert_eq!(
        class_of("NewInQemu42"),
        (
            "NewInQemu42".to_owned(),
            "NewInQemu42".to_owned(),
            ErrorClass::Other("NewInQemu42".to_owned())
        )
    );
    // as_str keeps the escapes as sent; Display and the owned class decode them.
    assert_eq!(
        class_of("New\\u0041"),
        (
            "New\\u0041".to_owned(),
            "NewA".to_owned(),
            ErrorClass::Other("NewA".to_owned())
        )
    );
    // Close to a known name is not that name.
    assert_eq!(
        class_of("genericerror").2,
        ErrorClass::Other("genericerror".to_owned())
    );
}

#[test]
fn owned_classes_by_name() {
    for known in [
        ErrorClass::GenericError,
        ErrorClass::CommandNotFound,
        ErrorClass::DeviceNotActive,
        ErrorClass::DeviceNotFound,
        ErrorClass::KvmMissingCap,
    ] {
        let name = known.to_string();
        assert_eq!(ErrorClass::from_name(name.clone()), known);
        assert_eq!(known.as_str(), name);
    }
    let other = ErrorClass::from_name(String::from("Mystery"));
    assert_eq!(other.as_str(), "Mystery");
    assert_eq!(other.to_string(), "Mystery");
    assert_eq!(other.clone().map(|s| s.len()), ErrorClass::Other(7));
    assert_eq!(
        ErrorClass::<String>::CommandNotFound.map(|s| s.len()),
        ErrorClass::CommandNotFound
    );
}
