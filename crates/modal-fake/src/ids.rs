//! Modal-shaped object ids and the JWTs the fake hands out.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::Rng as _;

const BASE62: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// Length of the random part of an id: clients route by the shape `sb-` + 22 base62 chars
/// (a V1 sandbox), so every id the fake mints has that length.
const ID_SUFFIX_LEN: usize = 22;

/// A new random id such as `sb-3kTMd9bA0xkQ1Lf7Zp2uW4`.
pub fn mint(prefix: &str) -> String {
    format!("{prefix}-{}", random_base62(ID_SUFFIX_LEN))
}

/// A V1-shaped sandbox id.
pub fn sandbox_id() -> String {
    mint("sb")
}

/// Length of the random part of a V2 sandbox id. Clients take any sandbox id that is not
/// `sb-` + 22 base62 characters for a V2 one, so V2 ids differ from V1 ids in length alone
/// (and stay alphanumeric, as Modal's CLI insists).
const V2_SANDBOX_SUFFIX_LEN: usize = 26;

fn random_base62(len: usize) -> String {
    let mut rng = rand::rng();
    (0..len)
        .map(|_| BASE62[rng.random_range(0..BASE62.len())] as char)
        .collect()
}

/// A V2-shaped sandbox id: `sb-` + 26 base62 characters.
pub fn sandbox_id_v2() -> String {
    format!("sb-{}", random_base62(V2_SANDBOX_SUFFIX_LEN))
}

/// The task id of a V1 sandbox. V2 task ids end in `V` and Python routes on that, so these
/// never do.
pub fn task_id() -> String {
    loop {
        let id = mint("ta");
        if !id.ends_with('V') {
            return id;
        }
    }
}

/// The task id of a V2 sandbox: the V1 shape, ending in `V` (the mark Python looks for).
pub fn task_id_v2() -> String {
    format!("ta-{}V", random_base62(ID_SUFFIX_LEN - 1))
}

/// An id derived from `seed`, so the same definition always gets the same id (Modal dedupes
/// images by content the same way).
pub fn derived(prefix: &str, seed: &[u8]) -> String {
    use std::hash::{DefaultHasher, Hash, Hasher};
    let mut value: u128 = 0;
    for salt in 0u8..2 {
        let mut hasher = DefaultHasher::new();
        salt.hash(&mut hasher);
        seed.hash(&mut hasher);
        value = (value << 64) | u128::from(hasher.finish());
    }
    let mut suffix = String::with_capacity(ID_SUFFIX_LEN);
    for _ in 0..ID_SUFFIX_LEN {
        suffix.push(BASE62[(value % 62) as usize] as char);
        value /= 62;
    }
    format!("{prefix}-{suffix}")
}

/// Whether `id` has the V1 sandbox shape: `sb-` + exactly 22 base62 characters.
#[cfg(test)]
pub fn is_v1_sandbox_id(id: &str) -> bool {
    id.strip_prefix("sb-").is_some_and(|suffix| {
        suffix.len() == ID_SUFFIX_LEN && suffix.bytes().all(|b| b.is_ascii_alphanumeric())
    })
}

/// Seconds since the Unix epoch, with sub-second precision.
pub fn now_secs_f64() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// A JWT (HS256-shaped; the signature is random bytes because nobody verifies it but us)
/// for `subject`, expiring after `lifetime`.
pub fn mint_jwt(subject: &str, lifetime: Duration) -> String {
    let now = now_secs_f64() as u64;
    let claims = serde_json::json!({
        "iss": "modal-fake",
        "sub": subject,
        "iat": now,
        "exp": now + lifetime.as_secs(),
        "jti": uuid::Uuid::new_v4().simple().to_string(),
    });
    let signature: [u8; 32] = rand::rng().random();
    format!(
        "{}.{}.{}",
        URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#),
        URL_SAFE_NO_PAD.encode(claims.to_string()),
        URL_SAFE_NO_PAD.encode(signature)
    )
}

/// The claims of a JWT, without verifying it.
pub fn jwt_claims(token: &str) -> Option<serde_json::Value> {
    let mut parts = token.split('.');
    let (_, payload, _) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    let bytes = URL_SAFE_NO_PAD.decode(payload).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// The stand-in written to cassettes wherever a real JWT was: a well-formed, unsigned token
/// whose `exp` lies far in the future, so replaying clients parse it and never refresh it.
pub fn redacted_jwt() -> String {
    format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#),
        URL_SAFE_NO_PAD.encode(br#"{"iss":"modal-fake","sub":"redacted","exp":4102444800}"#)
    )
}

/// Whether `value` looks like a JWT (three base64url segments, a JSON header).
pub fn looks_like_jwt(value: &str) -> bool {
    let parts: Vec<&str> = value.split('.').collect();
    parts.len() == 3
        && parts[0].starts_with("eyJ")
        && parts[..2].iter().all(|part| {
            !part.is_empty()
                && part
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minted_sandbox_ids_have_the_v1_shape() {
        for _ in 0..100 {
            let id = sandbox_id();
            assert!(is_v1_sandbox_id(&id), "{id}");
        }
        assert!(!is_v1_sandbox_id("sb-short"));
        assert!(!is_v1_sandbox_id("sb-0123456789012345678901V2"));
        assert!(!task_id().ends_with('V'));
    }

    #[test]
    fn minted_v2_ids_are_not_v1_shaped() {
        for _ in 0..100 {
            let id = sandbox_id_v2();
            assert!(id.starts_with("sb-") && !is_v1_sandbox_id(&id), "{id}");
            assert!(id[3..].bytes().all(|b| b.is_ascii_alphanumeric()), "{id}");
            let task = task_id_v2();
            assert!(task.starts_with("ta-") && task.ends_with('V'), "{task}");
            assert_eq!(task.len(), 3 + ID_SUFFIX_LEN);
        }
    }

    #[test]
    fn derived_ids_are_stable_and_distinct() {
        assert_eq!(derived("im", b"a"), derived("im", b"a"));
        assert_ne!(derived("im", b"a"), derived("im", b"b"));
        assert!(derived("im", b"a").starts_with("im-"));
        assert_eq!(derived("im", b"a").len(), 3 + ID_SUFFIX_LEN);
    }

    #[test]
    fn jwts_carry_an_expiry_and_are_recognised() {
        let token = mint_jwt("ta-1", Duration::from_secs(60));
        assert!(looks_like_jwt(&token));
        let claims = jwt_claims(&token).unwrap();
        assert_eq!(claims["sub"], "ta-1");
        assert!(claims["exp"].as_u64().unwrap() > now_secs_f64() as u64);
        let stand_in = redacted_jwt();
        assert!(looks_like_jwt(&stand_in));
        assert_eq!(jwt_claims(&stand_in).unwrap()["exp"], 4102444800u64);
        assert!(!looks_like_jwt("as-secret"));
    }
}
