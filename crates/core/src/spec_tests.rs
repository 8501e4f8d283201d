use super::*;

fn field_of(spec: SandboxSpec) -> String {
    match spec.validate() {
        Err(Error::InvalidSpec { field, .. }) => field,
        other => panic!("expected InvalidSpec, got {other:?}"),
    }
}

#[test]
fn a_plain_spec_is_valid() {
    SandboxSpec::new()
        .image("alpine:3.21")
        .env("A", "1")
        .cpu(0.5)
        .memory_mib(256)
        .lifetime_secs(60)
        .tag("team", "evals")
        .build()
        .unwrap();
}

#[test]
fn bad_values_name_their_field() {
    assert_eq!(field_of(SandboxSpec::new().cpu(0.0)), "cpu");
    assert_eq!(field_of(SandboxSpec::new().cpu(-1.0)), "cpu");
    assert_eq!(field_of(SandboxSpec::new().cpu(f64::NAN)), "cpu");
    assert_eq!(field_of(SandboxSpec::new().memory_mib(0)), "memory_mib");
    assert_eq!(
        field_of(SandboxSpec::new().gpu(GpuKind::H100, 0)),
        "gpu.count"
    );
    assert_eq!(
        field_of(SandboxSpec::new().lifetime_secs(0)),
        "lifetime_secs"
    );
    assert_eq!(
        field_of(SandboxSpec::new().workdir("relative/dir")),
        "workdir"
    );
    assert_eq!(field_of(SandboxSpec::new().env("A=B", "x")), "env.A=B");
    assert_eq!(field_of(SandboxSpec::new().env("A\0", "x")), "env.A\\0");
    assert_eq!(field_of(SandboxSpec::new().env("A", "x\0")), "env.A");
    assert_eq!(
        field_of(SandboxSpec::new().tag("sandkit.owner", "me")),
        "tags.sandkit.owner"
    );
    assert_eq!(field_of(SandboxSpec::new().name("has space")), "name");
    assert_eq!(field_of(SandboxSpec::new().port(0)), "ports[0]");
    assert_eq!(field_of(SandboxSpec::new().image("")), "image.reference");
    assert_eq!(field_of(SandboxSpec::new().image("a b")), "image.reference");
    assert_eq!(field_of(SandboxSpec::new().from_snapshot("")), "image.id");
    assert_eq!(
        field_of(SandboxSpec::new().entrypoint([""])),
        "entrypoint[0]"
    );
    assert_eq!(
        field_of(SandboxSpec::new().volume("v", "data")),
        "volumes[0].mount_path"
    );
    let allowlist = NetworkPolicy::AllowList {
        cidrs: vec!["10.0.0.0/33".into()],
        domains: vec![],
    };
    assert_eq!(
        field_of(SandboxSpec::new().network(allowlist)),
        "network.cidrs[0]"
    );
}

#[test]
fn lifetimes_are_capped_at_the_stated_maximum() {
    SandboxSpec::new()
        .lifetime_secs(MAX_LIFETIME_SECS)
        .idle_timeout_secs(MAX_LIFETIME_SECS)
        .build()
        .unwrap();
    for secs in [MAX_LIFETIME_SECS + 1, 99_999_999_999, u64::MAX] {
        assert_eq!(
            field_of(SandboxSpec::new().lifetime_secs(secs)),
            "lifetime_secs"
        );
        assert_eq!(
            field_of(SandboxSpec::new().idle_timeout_secs(secs)),
            "idle_timeout_secs"
        );
    }
}

#[test]
fn env_names_follow_one_grammar() {
    for good in ["A", "_", "a_1", "PATH", "_X9"] {
        assert!(is_env_name(good), "{good}");
        SandboxSpec::new().env(good, "v").build().unwrap();
    }
    for bad in ["", "1A", "A B", "A-B", "A.B", "Ä", "A=B", "A\0"] {
        assert!(!is_env_name(bad), "{bad:?}");
        let field = field_of(SandboxSpec::new().env(bad, "v"));
        assert!(field.starts_with("env."), "{field}");
        let field = field_of(SandboxSpec::new().secret(bad, "v"));
        assert!(field.starts_with("secrets."), "{field}");
    }
    let request = crate::ExecRequest::new(["true"]).env("A B", "x");
    assert!(matches!(
        request.validate(),
        Err(Error::InvalidSpec { field, .. }) if field == "env.A B"
    ));
}

#[test]
fn tag_keys_follow_one_grammar() {
    for good in [
        "team",
        "a",
        "9",
        "com.example/run-id",
        "x_y",
        "restart-marker",
    ] {
        assert!(is_tag_key(good), "{good}");
        SandboxSpec::new().tag(good, "v").build().unwrap();
    }
    for key in crate::ownership::OWNERSHIP_TAGS {
        assert!(is_tag_key(key), "{key}");
    }
    let long = "k".repeat(MAX_TAG_KEY_LEN + 1);
    for bad in [
        "",
        "a b",
        "-a",
        ".a",
        "a=b",
        "a,b",
        "a:b",
        "ä",
        "a\n",
        long.as_str(),
    ] {
        assert!(!is_tag_key(bad), "{bad:?}");
        let field = field_of(SandboxSpec::new().tag(bad, "v"));
        assert!(field.starts_with("tags."), "{field}");
    }
    assert_eq!(field_of(SandboxSpec::new().tag("k", "a\nb")), "tags.k");
    let value = "v".repeat(MAX_TAG_VALUE_LEN + 1);
    assert_eq!(field_of(SandboxSpec::new().tag("k", value)), "tags.k");
}

#[test]
fn providers_accept_ownership_tags_but_not_other_reserved_keys() {
    let mut spec = SandboxSpec::new();
    crate::Ownership {
        owner: "o".into(),
        run_id: "r".into(),
    }
    .apply(&mut spec, 1);
    assert!(spec.validate().is_err(), "users may not set ownership tags");
    spec.validate_with_ownership_tags().unwrap();
    let spec = spec.tag("sandkit.other", "x");
    assert_eq!(
        spec.validate_with_ownership_tags().unwrap_err().to_string(),
        SandboxSpec::new()
            .tag("sandkit.other", "x")
            .validate()
            .unwrap_err()
            .to_string()
    );
}

#[test]
fn secrets_never_print() {
    let spec = SandboxSpec::new().secret("API_KEY", "hunter2");
    assert!(!format!("{spec:?}").contains("hunter2"));
    assert!(!serde_json::to_string(&spec).unwrap().contains("hunter2"));
    let parsed: SandboxSpec = serde_json::from_str(r#"{"secrets":{"API_KEY":"hunter2"}}"#).unwrap();
    assert_eq!(parsed.secrets["API_KEY"].expose(), "hunter2");
}

#[test]
fn unknown_spec_fields_are_rejected_by_name() {
    let error = serde_json::from_str::<SandboxSpec>(r#"{"cpus": 2}"#).unwrap_err();
    assert!(error.to_string().contains("cpus"), "{error}");
}
