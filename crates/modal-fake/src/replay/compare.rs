//! Matching an incoming request against a recorded one: the differences, and the
//! client-made values (ids, names, ports) paired between the two.

use super::*;

/// One difference between a recorded and an incoming request.
pub(super) struct Difference {
    pub(super) path: String,
    pub(super) recorded: String,
    pub(super) got: String,
}

/// Compares a recorded request with an incoming one under the matching rules.
pub(super) struct Comparison<'a> {
    pub(super) bindings: &'a Bindings,
    pub(super) new_pairs: Vec<(String, String)>,
    pub(super) differences: Vec<Difference>,
    pub(super) ignore_offset: bool,
    pub(super) time_shift_secs: f64,
}

fn shown(value: &str) -> String {
    let mut text: String = value.chars().take(SHOWN_VALUE_CHARS).collect();
    if value.chars().count() > SHOWN_VALUE_CHARS {
        text.push('…');
    }
    format!("{text:?}")
}

fn describe(value: &Value) -> String {
    match value {
        Value::String(text) => shown(text),
        Value::Bytes(bytes) => match std::str::from_utf8(bytes) {
            Ok(text) => format!("bytes {}", shown(text)),
            Err(_) => format!("{} bytes", bytes.len()),
        },
        Value::Message(message) => shown(&descriptors::message_to_json(message).to_string()),
        Value::List(items) => format!("a list of {}", items.len()),
        Value::Map(map) => format!("a map of {}", map.len()),
        other => format!("{other:?}"),
    }
}

/// Splits text into literal pieces and tokens of client-made randomness: UUIDs
/// (`8-4-4-4-12` hex) and runs of at least 12 hex digits mixing digits and letters (simple
/// UUIDs and their prefixes, as in random names), standing alone between non-alphanumeric
/// characters.
pub(super) fn tokens(text: &str) -> (Vec<&str>, Vec<&str>) {
    let bytes = text.as_bytes();
    let hex = |b: u8| b.is_ascii_hexdigit();
    let alone_after = |at: usize| bytes.get(at).is_none_or(|b| !b.is_ascii_alphanumeric());
    let mut literals = Vec::new();
    let mut found = Vec::new();
    let mut literal_start = 0;
    let mut i = 0;
    while i < bytes.len() {
        let mut length = 0;
        if i == 0 || !bytes[i - 1].is_ascii_alphanumeric() {
            let mut at = i;
            let mut dashed = true;
            for (index, run) in [8usize, 4, 4, 4, 12].iter().enumerate() {
                if at + run > bytes.len() || !bytes[at..at + run].iter().all(|b| hex(*b)) {
                    dashed = false;
                    break;
                }
                at += run;
                if index < 4 {
                    if bytes.get(at) != Some(&b'-') {
                        dashed = false;
                        break;
                    }
                    at += 1;
                }
            }
            if dashed && alone_after(at) {
                length = at - i;
            } else {
                let run = bytes[i..].iter().take_while(|b| hex(**b)).count();
                let run_bytes = &bytes[i..i + run];
                if run >= 12
                    && alone_after(i + run)
                    && run_bytes.iter().any(u8::is_ascii_digit)
                    && run_bytes.iter().any(u8::is_ascii_alphabetic)
                {
                    length = run;
                }
            }
        }
        if length > 0 {
            literals.push(&text[literal_start..i]);
            found.push(&text[i..i + length]);
            i += length;
            literal_start = i;
        } else {
            i += 1;
        }
    }
    literals.push(&text[literal_start..]);
    (literals, found)
}

impl Comparison<'_> {
    pub(super) fn differ(&mut self, path: &str, recorded: String, got: String) {
        self.differences.push(Difference {
            path: path.to_owned(),
            recorded,
            got,
        });
    }

    /// Pairs a recorded value with a new one, if that is consistent with earlier pairs.
    pub(super) fn pair(&mut self, recorded: &str, new: &str) -> bool {
        let earlier_new = self.bindings.recorded_to_new.get(recorded).or_else(|| {
            self.new_pairs
                .iter()
                .find(|(r, _)| r == recorded)
                .map(|(_, n)| n)
        });
        if let Some(earlier) = earlier_new {
            return earlier == new;
        }
        let earlier_recorded = self.bindings.new_to_recorded.get(new).or_else(|| {
            self.new_pairs
                .iter()
                .find(|(_, n)| n == new)
                .map(|(r, _)| r)
        });
        if let Some(earlier) = earlier_recorded {
            return earlier == recorded;
        }
        self.new_pairs.push((recorded.to_owned(), new.to_owned()));
        true
    }

    pub(super) fn strings(&mut self, path: &str, field: &str, recorded: &str, got: &str) {
        if recorded == got || recorded == REDACTED {
            return;
        }
        let port = |text: &str| {
            !text.is_empty()
                && text.bytes().all(|b| b.is_ascii_digit())
                && text
                    .parse::<u32>()
                    .is_ok_and(|n| (1024..=65535).contains(&n))
        };
        let whole_value = (NAME_FIELDS.contains(&field) && !recorded.is_empty() && !got.is_empty())
            || (field == "command_args" && port(recorded) && port(got));
        if whole_value {
            if !self.pair(recorded, got) {
                self.differ(path, shown(recorded), shown(got));
            }
            return;
        }
        let (recorded_literals, recorded_tokens) = tokens(recorded);
        let (got_literals, got_tokens) = tokens(got);
        let same_shape =
            recorded_literals == got_literals && recorded_tokens.len() == got_tokens.len();
        if !same_shape
            || !recorded_tokens
                .iter()
                .zip(&got_tokens)
                .all(|(r, g)| self.pair(r, g))
        {
            self.differ(path, shown(recorded), shown(got));
        }
    }

    /// Pairs the random parts of two values that may differ without it mattering.
    pub(super) fn pair_loosely(&mut self, recorded: &str, got: &str) {
        let (recorded_literals, recorded_tokens) = tokens(recorded);
        let (got_literals, got_tokens) = tokens(got);
        if recorded_literals == got_literals && recorded_tokens.len() == got_tokens.len() {
            for (r, g) in recorded_tokens.iter().zip(&got_tokens) {
                // An inconsistent pair is simply not made: the value matches anyway.
                let _ = self.pair(r, g);
            }
        }
    }

    pub(super) fn values(&mut self, path: &str, field: &str, recorded: &Value, got: &Value) {
        if recorded == got {
            return;
        }
        if let (Value::F64(r), Value::F64(g)) = (recorded, got)
            && REQUEST_TIME_FIELDS.contains(&field)
            && *g > EPOCH_FLOOR_SECS
            && (r - (g - self.time_shift_secs)).abs() < 0.01
        {
            return;
        }
        match (recorded, got) {
            (Value::String(r), Value::String(g)) => self.strings(path, field, r, g),
            (Value::Bytes(r), Value::Bytes(g)) => {
                match (std::str::from_utf8(r), std::str::from_utf8(g)) {
                    (Ok(r), Ok(g)) => self.strings(path, field, r, g),
                    _ => self.differ(path, describe(recorded), describe(got)),
                }
            }
            (Value::Message(r), Value::Message(g)) => self.messages(path, r, g),
            (Value::List(r), Value::List(g)) => {
                if r.len() != g.len() {
                    self.differ(
                        path,
                        format!("{} items", r.len()),
                        format!("{} items", g.len()),
                    );
                    return;
                }
                for (index, (r, g)) in r.iter().zip(g).enumerate() {
                    self.values(&format!("{path}[{index}]"), field, r, g);
                }
            }
            (Value::Map(r), Value::Map(g)) => {
                let mut keys: Vec<&MapKey> = r.keys().chain(g.keys()).collect();
                keys.sort();
                keys.dedup();
                for key in keys {
                    let key_path = format!("{path}[{}]", map_key(key));
                    match (r.get(key), g.get(key)) {
                        (Some(r), Some(g)) => self.values(&key_path, field, r, g),
                        (Some(r), None) => self.differ(&key_path, describe(r), "nothing".into()),
                        (None, Some(g)) => self.differ(&key_path, "nothing".into(), describe(g)),
                        (None, None) => {}
                    }
                }
            }
            _ => self.differ(path, describe(recorded), describe(got)),
        }
    }

    pub(super) fn messages(&mut self, path: &str, recorded: &DynamicMessage, got: &DynamicMessage) {
        let descriptor = recorded.descriptor();
        let run_specific_tag = descriptor.full_name() == "modal.client.SandboxTag"
            && recorded
                .get_field_by_name("tag_name")
                .and_then(|name| name.as_str().map(str::to_owned))
                .is_some_and(|name| name.starts_with("sandkit.") && name != STABLE_SANDKIT_TAG);
        for field in descriptor.fields() {
            let name = field.name();
            if run_specific_tag && name == "tag_value" {
                if let (Some(Value::String(r)), Some(Value::String(g))) = (
                    recorded.get_field_by_name(name).map(|v| v.into_owned()),
                    got.get_field_by_name(name).map(|v| v.into_owned()),
                ) {
                    let time_tag = recorded.get_field_by_name("tag_name").is_some_and(|tag| {
                        tag.as_str().is_some_and(|tag| TIME_TAGS.contains(&tag))
                    });
                    if time_tag {
                        // An inconsistent pair is not made: the value matches anyway, and
                        // answers carry it shifted by the time between the two runs.
                        let _ = self.pair(&r, &g);
                    } else {
                        self.pair_loosely(&r, &g);
                    }
                }
                continue;
            }
            if self.ignore_offset && name == "offset" {
                continue;
            }
            let field_path = if path.is_empty() {
                name.to_owned()
            } else {
                format!("{path}.{name}")
            };
            let r = recorded.get_field(&field);
            let g = got.get_field(&field);
            self.values(&field_path, name, &r, &g);
        }
    }
}

fn map_key(key: &MapKey) -> String {
    match key {
        MapKey::String(text) => text.clone(),
        other => format!("{other:?}"),
    }
}
