use super::*;

#[test]
fn uuids_are_found_inside_text() {
    let (literals, found) =
        tokens("/tmp/f-123e4567-e89b-12d3-a456-426614174000/x 0123456789abcdef0123456789abcdef!");
    assert_eq!(
        found,
        [
            "123e4567-e89b-12d3-a456-426614174000",
            "0123456789abcdef0123456789abcdef"
        ]
    );
    assert_eq!(literals, ["/tmp/f-", "/x ", "!"]);
    let (_, names) = tokens("conformance-name-0a1b2c3d4e5f");
    assert_eq!(names, ["0a1b2c3d4e5f"]);
    let (_, none) = tokens("sb-abc 1234 deadbeef 123456789012 xa1b2c3d4e5f6a7");
    assert!(none.is_empty(), "{none:?}");
}

#[test]
fn paired_values_must_stay_consistent() {
    let bindings = Bindings::default();
    let mut comparison = Comparison {
        bindings: &bindings,
        new_pairs: Vec::new(),
        differences: Vec::new(),
        ignore_offset: false,
        time_shift_secs: 0.0,
    };
    let a = "11111111-1111-1111-1111-111111111111";
    let b = "22222222-2222-2222-2222-222222222222";
    let c = "33333333-3333-3333-3333-333333333333";
    comparison.strings("exec_id", "exec_id", a, b);
    comparison.strings("exec_id", "exec_id", a, b);
    assert!(comparison.differences.is_empty());
    comparison.strings("exec_id", "exec_id", a, c);
    assert_eq!(comparison.differences.len(), 1);
    comparison.strings("args", "command_args", "echo 1", "echo 2");
    assert_eq!(comparison.differences.len(), 2);
    comparison.strings("x", "env_dict", REDACTED, "anything");
    assert_eq!(comparison.differences.len(), 2);
}

#[test]
fn answers_move_to_the_replay_time() {
    use sandkit_modal_proto::client as pb;
    let info = pb::SandboxInfo {
        created_at: 1_700_000_000.5,
        timeout_secs: 300,
        tags: vec![
            pb::SandboxTag {
                tag_name: "sandkit.expires-at".into(),
                tag_value: "1700000300".into(),
            },
            pb::SandboxTag {
                tag_name: "team".into(),
                tag_value: "1700000300".into(),
            },
        ],
        ..Default::default()
    };
    let descriptor = descriptors::pool()
        .get_message_by_name("modal.client.SandboxInfo")
        .unwrap();
    let message = descriptors::decode(&descriptor, &prost::Message::encode_to_vec(&info)).unwrap();
    let mut value = Value::Message(message);
    shift_times(&mut value, "", 100.0, &Bindings::default());
    let Value::Message(message) = value else {
        unreachable!()
    };
    let json = descriptors::message_to_json(&message);
    assert_eq!(json["created_at"], 1_700_000_100.5);
    assert_eq!(json["timeout_secs"], 300);
    assert_eq!(json["tags"][0]["tag_value"], "1700000400");
    assert_eq!(json["tags"][1]["tag_value"], "1700000300");
}
