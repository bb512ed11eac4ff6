//! How the server reads a session's statement text, as its own reports
//! (`ParameterStatus`) say: the client encoding and whether plain strings
//! take backslash escapes. The gateway reads text the same way, and ends a
//! session whose reading it cannot follow.

use bytes::BytesMut;
use taskgate_sqlclass::Strings;
use taskgate_wire_pg::backend::{self, BackendMessage};
use taskgate_wire_pg::encoding::ClientEncoding;
use taskgate_wire_pg::frame::{self, Direction, Limits};

/// The settings statement text is read under.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reading {
    pub encoding: ClientEncoding,
    pub strings: Strings,
}

impl Default for Reading {
    fn default() -> Self {
        Reading {
            encoding: ClientEncoding::UTF8,
            strings: Strings::Standard,
        }
    }
}

impl Reading {
    /// Follows a setting the server reported. Returns why the session
    /// must end: an encoding the gateway cannot read statements in, or an
    /// application name that no longer names the task
    /// (`taskgate/<task>`), which ties the database's own logs to it.
    pub fn follow(&mut self, name: &str, value: &str, task: &str) -> Option<String> {
        match name {
            "client_encoding" => match ClientEncoding::named(value) {
                Ok(encoding) => {
                    self.encoding = encoding;
                    None
                }
                Err(refused) => Some(format!("client_encoding changed: {refused}")),
            },
            "standard_conforming_strings" => {
                self.strings = Strings::of_setting(value);
                None
            }
            "application_name" => (!super::app_name::names_task(value, task)).then(|| {
                format!(
                    "application_name changed to {value:?}; it must name the task ({})",
                    super::app_name::tag(task)
                )
            }),
            _ => None,
        }
    }

    /// The reading the server's first reports (its `ParameterStatus`
    /// messages after login, raw) set.
    pub fn reported(parameter_status: &[u8], task: &str) -> Result<Reading, String> {
        let mut reading = Reading::default();
        let mut buf = BytesMut::from(parameter_status);
        while let Ok(Some(frame)) = frame::decode(&mut buf, Direction::Backend, &Limits::default())
        {
            if let Ok(BackendMessage::ParameterStatus { name, value }) = backend::decode(&frame)
                && let Some(why) = reading.follow(name, value, task)
            {
                return Err(why);
            }
        }
        Ok(reading)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_are_followed_or_end_the_session() {
        let mut r = Reading::default();
        assert!(r.follow("client_encoding", "LATIN1", "t").is_none());
        assert_eq!(r.encoding.name, "LATIN1");
        assert!(
            r.follow("standard_conforming_strings", "off", "t")
                .is_none()
        );
        assert_eq!(r.strings, Strings::Backslash);
        assert!(r.follow("standard_conforming_strings", "on", "t").is_none());
        assert_eq!(r.strings, Strings::Standard);
        assert!(r.follow("client_encoding", "SJIS", "t").is_some());
        assert!(r.follow("client_encoding", "BIG5", "t").is_some());
        assert!(r.follow("TimeZone", "UTC", "t").is_none());
        assert!(r.follow("application_name", "taskgate/t", "t").is_none());
        assert!(
            r.follow("application_name", "taskgate/t psql", "t")
                .is_none()
        );
        assert!(r.follow("application_name", "innocent", "t").is_some());
        assert!(
            r.follow("application_name", "taskgate/other", "t")
                .is_some()
        );
    }

    #[test]
    fn the_first_reports_set_the_reading() {
        use taskgate_wire_pg::encode::backend as enc;
        let mut raw = enc::parameter_status("client_encoding", "EUC_JP");
        raw.extend(enc::parameter_status("standard_conforming_strings", "off"));
        let r = Reading::reported(&raw, "t").unwrap();
        assert_eq!((r.encoding.name, r.strings), ("EUC_JP", Strings::Backslash));
        let sjis = enc::parameter_status("client_encoding", "SJIS");
        assert!(Reading::reported(&sjis, "t").is_err());
    }
}
