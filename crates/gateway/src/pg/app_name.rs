//! The application name: the server's names the task, the client's is
//! the one it asked for.
//!
//! Upstream, every session's `application_name` starts with the task's
//! tag (`taskgate/<task id>`, then a space and the client's own name), so
//! the database's logs and `pg_stat_activity` tie it to the task. A
//! client's `SET application_name = 'x'` is sent as a SET of the tagged
//! name (see `ClientHalf`); what the server reports back is shown to the
//! client without the tag, as PostgreSQL would report the name it set.

use std::sync::Arc;

use bytes::BytesMut;
use taskgate_sqlclass::{ApplicationName, Class, Classification};
use taskgate_wire_pg::backend::{self, BackendMessage};
use taskgate_wire_pg::encode::backend as enc;
use taskgate_wire_pg::encoding::ClientEncoding;
use taskgate_wire_pg::frame::{self, Direction, Limits};

/// The tag every session's name upstream starts with.
pub fn tag(task: &str) -> String {
    format!("taskgate/{task}")
}

/// The name sent upstream for the one the client asked for.
pub fn tagged(asked: &str, task: &str) -> String {
    if asked.is_empty() {
        tag(task)
    } else {
        format!("{} {asked}", tag(task))
    }
}

/// Whether the server's name still names the task.
pub fn names_task(value: &str, task: &str) -> bool {
    let tag = tag(task);
    value == tag
        || value
            .strip_prefix(&tag)
            .is_some_and(|rest| rest.starts_with(' '))
}

/// The name the client is shown for the server's.
pub fn shown<'a>(value: &'a str, task: &str) -> &'a str {
    let tag = tag(task);
    match value.strip_prefix(&tag) {
        Some("") => "",
        Some(rest) => rest.strip_prefix(' ').unwrap_or(value),
        None => value,
    }
}

/// A ParameterStatus as the client is shown it: `None` when it goes as it
/// came.
pub fn shown_report(name: &str, value: &str, task: &str) -> Option<Vec<u8>> {
    if name != "application_name" {
        return None;
    }
    let shown = shown(value, task);
    (shown != value).then(|| enc::parameter_status(name, shown))
}

/// How a client's statement that is nothing but a SET of
/// `application_name` is sent.
#[derive(Debug, PartialEq, Eq)]
pub enum Sending {
    /// As it came (`RESET`, `TO DEFAULT`: back to the tagged name the
    /// session logged in with).
    AsIs,
    /// This statement instead: the tagged name.
    Instead(String),
    /// Refused, for this reason.
    Refused(String),
}

/// How `judged` (one statement, as the server reads it, classified as
/// `class`) is sent, when it sets `application_name`; `None` for any
/// other statement. Only a SET or RESET is parsed again.
pub fn sending(
    judged: &str,
    class: &Classification,
    task: &str,
    encoding: &ClientEncoding,
) -> Option<Sending> {
    if !matches!(class.command.as_str(), "SET" | "RESET") {
        return None;
    }
    Some(match taskgate_sqlclass::application_name_set(judged)? {
        ApplicationName::Reset => Sending::AsIs,
        // The gateway writes the statement in ASCII, which every encoding
        // it reads spells alike.
        ApplicationName::Set { value, .. } if !encoding.is_utf8() && !value.is_ascii() => {
            Sending::Refused(format!(
                "an application_name with non-ASCII characters is taken only under client_encoding UTF8 (this session's is {})",
                encoding.name
            ))
        }
        ApplicationName::Set { value, local } => Sending::Instead(
            taskgate_sqlclass::set_application_name(&tagged(&value, task), local),
        ),
    })
}

/// A SET of the application name is judged as the ordinary setting it is
/// once the gateway keeps the tag in it.
pub fn as_setting(c: &Classification) -> Arc<Classification> {
    Arc::new(Classification {
        class: Class::Utility,
        ..c.clone()
    })
}

/// The login's ParameterStatus messages (raw) as the client is shown them.
pub fn shown_reports(raw: &[u8], task: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len());
    let mut buf = BytesMut::from(raw);
    while let Ok(Some(frame)) = frame::decode(&mut buf, Direction::Backend, &Limits::default()) {
        let shown = match backend::decode(&frame) {
            Ok(BackendMessage::ParameterStatus { name, value }) => shown_report(name, value, task),
            _ => None,
        };
        match shown {
            Some(shown) => out.extend(shown),
            None => out.extend_from_slice(&frame.raw),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_client_sees_its_own_name_and_the_server_the_tagged_one() {
        assert_eq!(
            tagged("PostgreSQL JDBC Driver", "t1"),
            "taskgate/t1 PostgreSQL JDBC Driver"
        );
        assert_eq!(tagged("", "t1"), "taskgate/t1");
        assert_eq!(
            shown("taskgate/t1 PostgreSQL JDBC Driver", "t1"),
            "PostgreSQL JDBC Driver"
        );
        assert_eq!(shown("taskgate/t1", "t1"), "");
        assert_eq!(shown("taskgate/t10 x", "t1"), "taskgate/t10 x");
        assert_eq!(shown("innocent", "t1"), "innocent");
        assert!(names_task("taskgate/t1", "t1"));
        assert!(names_task("taskgate/t1 psql", "t1"));
        assert!(!names_task("taskgate/t10", "t1"));
        assert!(!names_task("innocent", "t1"));
    }

    #[test]
    fn a_set_is_sent_with_the_tag_and_a_reset_as_it_came() {
        let utf8 = ClientEncoding::UTF8;
        assert_eq!(
            sending(
                "SET application_name = 'PostgreSQL JDBC Driver'",
                &taskgate_sqlclass::classify("SET application_name = 'PostgreSQL JDBC Driver'"),
                "t1",
                &utf8
            ),
            Some(Sending::Instead(
                "SET application_name = E'taskgate/t1 PostgreSQL JDBC Driver'".into()
            ))
        );
        assert_eq!(
            sending(
                "SET LOCAL application_name = ''",
                &taskgate_sqlclass::classify("SET LOCAL application_name = ''"),
                "t1",
                &utf8
            ),
            Some(Sending::Instead(
                "SET LOCAL application_name = E'taskgate/t1'".into()
            ))
        );
        assert_eq!(
            sending(
                "RESET application_name",
                &taskgate_sqlclass::classify("RESET application_name"),
                "t1",
                &utf8
            ),
            Some(Sending::AsIs)
        );
        assert_eq!(
            sending(
                "SET search_path = a",
                &taskgate_sqlclass::classify("SET search_path = a"),
                "t1",
                &utf8
            ),
            None
        );
        let latin1 = ClientEncoding::named("LATIN1").unwrap();
        assert!(matches!(
            sending(
                "SET application_name = 'café'",
                &taskgate_sqlclass::classify("SET application_name = 'café'"),
                "t1",
                &latin1
            ),
            Some(Sending::Refused(_))
        ));
        assert!(matches!(
            sending(
                "SET application_name = 'cafe'",
                &taskgate_sqlclass::classify("SET application_name = 'cafe'"),
                "t1",
                &latin1
            ),
            Some(Sending::Instead(_))
        ));
    }

    #[test]
    fn only_the_application_name_report_is_rewritten() {
        let mut raw = enc::parameter_status("client_encoding", "UTF8");
        raw.extend(enc::parameter_status(
            "application_name",
            "taskgate/t1 psql",
        ));
        raw.extend(enc::parameter_status("application_name", "taskgate/t1"));
        let mut want = enc::parameter_status("client_encoding", "UTF8");
        want.extend(enc::parameter_status("application_name", "psql"));
        want.extend(enc::parameter_status("application_name", ""));
        assert_eq!(shown_reports(&raw, "t1"), want);
    }
}
