//! What becomes of a client's startup parameters (and the settings in its
//! `options`): each passes, is tightened against the gateway's ceiling, or
//! refuses the login with a message naming it. Nothing is dropped silently.
//!
//! Pure: the caller gives the client's parameters and the gateway's own,
//! and gets the settings to send upstream or the refusal.

use taskgate_policy::Access;
use taskgate_wire_pg::encoding::ClientEncoding;

/// Settings a client may set as it likes: they change how answers look or
/// how its own session behaves, not what it may do.
const PASSED: &[&str] = &[
    "datestyle",
    "timezone",
    "intervalstyle",
    "extra_float_digits",
    "search_path",
    "bytea_output",
    "client_min_messages",
    "idle_in_transaction_session_timeout",
    "idle_session_timeout",
    "default_transaction_isolation",
    "default_transaction_deferrable",
    "work_mem",
    "jit",
    "geqo",
    "lc_monetary",
    "lc_numeric",
    "lc_time",
];

/// Parameters the startup packet carries for the protocol, not as settings.
const PROTOCOL: &[&str] = &[
    "user",
    "database",
    "replication",
    "options",
    "application_name",
];

#[derive(Debug, PartialEq, Eq)]
pub struct Refused(pub String);

/// One setting a client asked for, and where it came from.
struct Asked {
    name: String,
    value: String,
    from_options: bool,
}

/// The settings to send upstream for the client's `client` parameters:
/// `ceilings` holds the gateway's own timeouts in milliseconds, which a
/// client may lower but never raise or lift, `access` the grant's level (a read grant's session
/// stays read-only). `client_encoding` passes when the gateway can read
/// statements in it (see `taskgate_wire_pg::encoding`), under PostgreSQL's
/// name for it; `standard_conforming_strings` as `on` or `off`.
pub fn settings(
    client: &[(String, String)],
    ceilings: &[(&str, u128)],
    access: Access,
) -> Result<Vec<(String, String)>, Refused> {
    let mut asked = Vec::new();
    for (name, value) in client {
        let lower = name.to_ascii_lowercase();
        if lower == "options" {
            for (name, value) in options(value)? {
                asked.push(Asked {
                    name: name.to_ascii_lowercase(),
                    value,
                    from_options: true,
                });
            }
        } else if !PROTOCOL.contains(&lower.as_str()) {
            asked.push(Asked {
                name: lower,
                value: value.clone(),
                from_options: false,
            });
        }
    }
    let mut out: Vec<(String, String)> = ceilings
        .iter()
        .map(|(name, ms)| ((*name).to_owned(), ms.to_string()))
        .collect();
    for a in asked {
        let named = |why: &str| {
            let place = if a.from_options { "options: " } else { "" };
            Refused(format!("{place}{} = {:?}: {why}", a.name, a.value))
        };
        if let Some(ceiling) = ceilings
            .iter()
            .find(|(n, _)| *n == a.name)
            .map(|(_, ms)| *ms)
        {
            let ms = duration_ms(&a.value).ok_or_else(|| named("not a duration"))?;
            // 0 turns the timeout off: the gateway's ceiling stays.
            if ms > 0 && ms < ceiling {
                set(&mut out, &a.name, ms.to_string());
            }
        } else if a.name == "default_transaction_read_only" {
            match (access, on_off(&a.value)) {
                (_, None) => return Err(named("not a boolean")),
                (Access::Read, Some(false)) => {
                    return Err(named("a read grant's session stays read-only"));
                }
                (_, Some(on)) => set(&mut out, &a.name, if on { "on" } else { "off" }.into()),
            }
        } else if a.name == "client_encoding" {
            let encoding = ClientEncoding::named(&a.value).map_err(|e| named(&e.to_string()))?;
            set(&mut out, &a.name, encoding.name.to_owned());
        } else if a.name == "standard_conforming_strings" {
            let on = on_off(&a.value).ok_or_else(|| named("not a boolean"))?;
            set(&mut out, &a.name, if on { "on" } else { "off" }.into());
        } else if PASSED.contains(&a.name.as_str()) {
            set(&mut out, &a.name, a.value.clone());
        } else {
            return Err(named(
                "the gateway does not pass this setting on; set it with SET after connecting if the grant allows it",
            ));
        }
    }
    Ok(out)
}

fn set(out: &mut Vec<(String, String)>, name: &str, value: String) {
    match out.iter_mut().find(|(n, _)| n == name) {
        Some(entry) => entry.1 = value,
        None => out.push((name.to_owned(), value)),
    }
}

fn on_off(value: &str) -> Option<bool> {
    match value.trim().to_ascii_lowercase().as_str() {
        "on" | "true" | "yes" | "1" | "t" | "y" => Some(true),
        "off" | "false" | "no" | "0" | "f" | "n" => Some(false),
        _ => None,
    }
}

/// A PostgreSQL time setting in milliseconds: a number with an optional
/// unit (`us`, `ms`, `s`, `min`, `h`, `d`; none means milliseconds).
pub fn duration_ms(value: &str) -> Option<u128> {
    let value = value.trim();
    let split = value
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(value.len());
    let (number, unit) = value.split_at(split);
    let number: f64 = number.parse().ok()?;
    let factor = match unit.trim() {
        "" | "ms" => 1.0,
        "us" => 0.001,
        "s" => 1_000.0,
        "min" => 60_000.0,
        "h" => 3_600_000.0,
        "d" => 86_400_000.0,
        _ => return None,
    };
    let ms = number * factor;
    (ms.is_finite() && ms >= 0.0 && ms < 2f64.powi(53)).then(|| ms.ceil() as u128)
}

/// The `-c name=value` and `--name=value` settings of an `options` string,
/// split on spaces, with `\` escaping the next character, as the server
/// reads it. Anything else in it refuses the login.
fn options(text: &str) -> Result<Vec<(String, String)>, Refused> {
    let mut words: Vec<String> = Vec::new();
    let mut word = String::new();
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                if let Some(next) = chars.next() {
                    word.push(next);
                }
            }
            c if c.is_whitespace() => {
                if !word.is_empty() {
                    words.push(std::mem::take(&mut word));
                }
            }
            c => word.push(c),
        }
    }
    if !word.is_empty() {
        words.push(word);
    }
    let mut out = Vec::new();
    let mut words = words.into_iter();
    while let Some(w) = words.next() {
        let setting = if w == "-c" {
            words
                .next()
                .ok_or_else(|| Refused("options: -c without a setting".into()))?
        } else if let Some(rest) = w.strip_prefix("-c") {
            rest.to_owned()
        } else if let Some(rest) = w.strip_prefix("--") {
            rest.to_owned()
        } else {
            return Err(Refused(format!(
                "options: {w:?} is not a -c name=value setting; the gateway passes only settings"
            )));
        };
        let (name, value) = setting
            .split_once('=')
            .ok_or_else(|| Refused(format!("options: {setting:?} has no value")))?;
        out.push((name.replace('-', "_"), value.to_owned()));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CEILINGS: &[(&str, u128)] = &[("statement_timeout", 900_000), ("lock_timeout", 30_000)];

    fn p(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn value<'a>(out: &'a [(String, String)], name: &str) -> Option<&'a str> {
        out.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    #[test]
    fn encodings_the_gateway_can_read_pass_under_their_own_names() {
        let out = settings(
            &p(&[
                ("client_encoding", "latin-1"),
                ("Standard_Conforming_Strings", "false"),
            ]),
            CEILINGS,
            Access::Read,
        )
        .unwrap();
        assert_eq!(value(&out, "client_encoding"), Some("LATIN1"));
        assert_eq!(value(&out, "standard_conforming_strings"), Some("off"));
        let out = settings(
            &p(&[("options", "-c client_encoding=EUC_JP")]),
            CEILINGS,
            Access::Read,
        )
        .unwrap();
        assert_eq!(value(&out, "client_encoding"), Some("EUC_JP"));
        for (name, value, why) in [
            ("client_encoding", "SJIS", "multibyte"),
            ("CLIENT_ENCODING", "big5", "multibyte"),
            ("client_encoding", "EUC_TW", "not supported"),
            ("client_encoding", "klingon", "not an encoding"),
            ("standard_conforming_strings", "maybe", "not a boolean"),
        ] {
            let refused = settings(&p(&[(name, value)]), CEILINGS, Access::Write);
            assert!(
                matches!(&refused, Err(Refused(m)) if m.contains(why) && m.contains(&name.to_ascii_lowercase())),
                "{name}={value}: {refused:?}"
            );
        }
    }

    #[test]
    fn a_stricter_timeout_wins_a_looser_one_does_not() {
        let out = settings(&p(&[("statement_timeout", "3s")]), CEILINGS, Access::Write).unwrap();
        assert_eq!(value(&out, "statement_timeout"), Some("3000"));
        assert_eq!(value(&out, "lock_timeout"), Some("30000"));
        for looser in ["1h", "0", "3600000"] {
            let out = settings(
                &p(&[("statement_timeout", looser)]),
                CEILINGS,
                Access::Write,
            )
            .unwrap();
            assert_eq!(value(&out, "statement_timeout"), Some("900000"), "{looser}");
        }
        let bad = settings(&p(&[("lock_timeout", "soon")]), CEILINGS, Access::Write);
        assert!(
            matches!(bad, Err(Refused(m)) if m.contains("lock_timeout") && m.contains("not a duration"))
        );
    }

    #[test]
    fn options_settings_go_through_the_same_rules() {
        let out = settings(
            &p(&[("options", "-c search_path=s2,public --idle-in-transaction-session-timeout=5s -cstatement_timeout=2s")]),
            CEILINGS,
            Access::Read,
        )
        .unwrap();
        assert_eq!(value(&out, "search_path"), Some("s2,public"));
        assert_eq!(
            value(&out, "idle_in_transaction_session_timeout"),
            Some("5s")
        );
        assert_eq!(value(&out, "statement_timeout"), Some("2000"));
        for (options, named) in [
            ("-c role=admin", "role"),
            ("-c default_transaction_read_only=off", "stays read-only"),
            ("--session_authorization=postgres", "session_authorization"),
            ("-D /tmp", "not a -c name=value"),
        ] {
            let refused = settings(&p(&[("options", options)]), CEILINGS, Access::Read);
            assert!(
                matches!(&refused, Err(Refused(m)) if m.contains(named)),
                "{options}: {refused:?}"
            );
        }
    }

    #[test]
    fn plain_parameters_pass_or_refuse_by_name() {
        let out = settings(
            &p(&[
                ("user", "t"),
                ("database", "d"),
                ("DateStyle", "ISO"),
                ("application_name", "x"),
            ]),
            CEILINGS,
            Access::Write,
        )
        .unwrap();
        assert_eq!(value(&out, "datestyle"), Some("ISO"));
        assert_eq!(value(&out, "user"), None);
        let refused = settings(&p(&[("role", "admin")]), CEILINGS, Access::Write);
        assert!(refused.is_err());
    }

    #[test]
    fn durations_read_as_postgresql_reads_them() {
        assert_eq!(duration_ms("3s"), Some(3000));
        assert_eq!(duration_ms("250"), Some(250));
        assert_eq!(duration_ms("1.5 min"), Some(90_000));
        assert_eq!(duration_ms("2h"), Some(7_200_000));
        assert_eq!(duration_ms("soon"), None);
        assert_eq!(duration_ms("-1"), None);
    }
}
