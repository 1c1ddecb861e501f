//! The audit log's records: one JSON object per security-relevant event.
//!
//! The API reports events to an [`AuditSink`] (the node writes them to the
//! file `audit.file`, see `docs/security.md`, "Audit log"); this module holds
//! what an event is, which requests are audited ([`Audited`]), and the exact
//! line format ([`audit_line`]), so that the format is tested without a
//! runtime.
//!
//! A line, with its fields in this order:
//!
//! ```text
//! {"ts":"2026-11-26T21:45:03.120Z","event":"user_add","user":"root","source":"127.0.0.1:53412",
//!  "member":{"id":"1","name":"m1"},"outcome":"ok","detail":{"name":"alice"}}
//! ```
//!
//! (one line in the file). `ts` is RFC 3339 in UTC with milliseconds; `user`
//! is the authenticated user, or `anonymous`; `source` the client's address
//! (`local` for events the member raises itself); `member` the member that
//! handled the request (id in hex, as etcdctl prints it); `outcome` one of
//! `ok`, `denied`, `error`; `detail` an object whose keys depend on the event.
//! No password, hash or token is ever part of a record.

use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;
use serde_json::{json, Value};
use tonic::{Code, Status};

use crate::pb::etcdserverpb as pb;

/// How an audited request ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// Done.
    Ok,
    /// Refused: no permission, a bad password, an invalid token.
    Denied,
    /// Failed for another reason (not leader, unknown user, a bad request).
    Error,
}

impl Outcome {
    /// The outcome of a request that ended with `status`: `denied` for
    /// refusals (permission denied, unauthenticated, a failed
    /// authentication, an invalid token), else `error`.
    pub fn of_status(status: &Status) -> Outcome {
        let message = status.message();
        if matches!(status.code(), Code::PermissionDenied | Code::Unauthenticated)
            || message.contains("authentication failed")
            || message.contains("invalid auth token")
        {
            Outcome::Denied
        } else {
            Outcome::Error
        }
    }
}

/// One security-relevant event, as the API or the member reports it; the
/// sink adds the time and the member.
#[derive(Clone, Debug, PartialEq)]
pub struct AuditEvent {
    /// What happened: `auth_enable`, `user_add`, `authenticate`,
    /// `permission_denied`, `member_add`, `tls_reload`, ... (see
    /// `docs/security.md` for the list).
    pub event: &'static str,
    /// Who: the authenticated user, or `anonymous` (for `authenticate`: the
    /// user name that tried to log in).
    pub user: String,
    /// From where: the client's address, or `local`.
    pub source: String,
    /// How it ended.
    pub outcome: Outcome,
    /// Event-specific fields (a JSON object).
    pub detail: Value,
}

/// Where audit events go. Called on the member's executor thread: an
/// implementation must not block on I/O.
pub trait AuditSink {
    /// Records one event.
    fn record(&self, event: AuditEvent);
}

/// The member an audit record was written by.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditMember {
    /// Its id.
    pub id: u64,
    /// Its name.
    pub name: String,
}

#[derive(Serialize)]
struct Line<'a> {
    ts: String,
    event: &'a str,
    user: &'a str,
    source: &'a str,
    member: MemberField<'a>,
    outcome: Outcome,
    detail: &'a Value,
}

#[derive(Serialize)]
struct MemberField<'a> {
    id: String,
    name: &'a str,
}

/// `event` as one line of the audit log (without the newline): see the
/// module doc for the format.
pub fn audit_line(ts: SystemTime, member: &AuditMember, event: &AuditEvent) -> String {
    let line = Line {
        ts: rfc3339_utc_millis(ts),
        event: event.event,
        user: &event.user,
        source: &event.source,
        member: MemberField { id: format!("{:x}", member.id), name: &member.name },
        outcome: event.outcome,
        detail: &event.detail,
    };
    serde_json::to_string(&line).expect("an audit line always serializes")
}

/// `time` as RFC 3339 in UTC with milliseconds (`2026-11-26T21:45:03.120Z`);
/// times before 1970 print as the epoch.
pub fn rfc3339_utc_millis(time: SystemTime) -> String {
    let since = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let (days, rest) = (secs / 86_400, secs % 86_400);
    let (year, month, day) = civil_from_days(days as i64);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60,
        since.subsec_millis()
    )
}

/// The proleptic Gregorian date of `days` after 1970-01-01 (Howard
/// Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// A key or range end as text for a record: UTF-8 as is, anything else
/// lossily (a record is for people, not a way to read keys back).
fn key_text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn perm_type_text(t: i32) -> &'static str {
    match t {
        0 => "READ",
        1 => "WRITE",
        2 => "READWRITE",
        _ => "UNKNOWN",
    }
}

/// Whether a request is audited, and with what: its event name and detail.
/// Requests that are not audited answer `None` (their refusals still are,
/// as `permission_denied`).
pub trait Audited {
    /// The event and its detail (never a password), or `None`.
    fn audit(&self) -> Option<(&'static str, Value)> {
        None
    }

    /// The user the record names instead of the caller (`authenticate`: the
    /// user who tries to log in).
    fn audit_user(&self) -> Option<&str> {
        None
    }
}

macro_rules! not_audited {
    ($($t:ty),* $(,)?) => {$( impl Audited for $t {} )*};
}

not_audited!(
    pb::RangeRequest,
    pb::PutRequest,
    pb::DeleteRangeRequest,
    pb::TxnRequest,
    pb::CompactionRequest,
    pb::LeaseGrantRequest,
    pb::LeaseRevokeRequest,
    pb::LeaseTimeToLiveRequest,
    pb::LeaseKeepAliveRequest,
    pb::LeaseLeasesRequest,
    pb::AlarmRequest,
    pb::StatusRequest,
    pb::DefragmentRequest,
    pb::HashRequest,
    pb::HashKvRequest,
    pb::MoveLeaderRequest,
    pb::SnapshotRequest,
    pb::MemberListRequest,
    pb::AuthStatusRequest,
    pb::AuthUserGetRequest,
    pb::AuthUserListRequest,
    pb::AuthRoleGetRequest,
    pb::AuthRoleListRequest,
);

impl Audited for pb::AuthEnableRequest {
    fn audit(&self) -> Option<(&'static str, Value)> {
        Some(("auth_enable", json!({})))
    }
}

impl Audited for pb::AuthDisableRequest {
    fn audit(&self) -> Option<(&'static str, Value)> {
        Some(("auth_disable", json!({})))
    }
}

impl Audited for pb::AuthenticateRequest {
    fn audit(&self) -> Option<(&'static str, Value)> {
        Some(("authenticate", json!({ "name": self.name })))
    }

    fn audit_user(&self) -> Option<&str> {
        Some(&self.name)
    }
}

impl Audited for pb::AuthUserAddRequest {
    fn audit(&self) -> Option<(&'static str, Value)> {
        let no_password = self.options.as_ref().is_some_and(|o| o.no_password);
        Some(("user_add", json!({ "name": self.name, "no_password": no_password })))
    }
}

impl Audited for pb::AuthUserDeleteRequest {
    fn audit(&self) -> Option<(&'static str, Value)> {
        Some(("user_delete", json!({ "name": self.name })))
    }
}

impl Audited for pb::AuthUserChangePasswordRequest {
    fn audit(&self) -> Option<(&'static str, Value)> {
        Some(("user_change_password", json!({ "name": self.name })))
    }
}

impl Audited for pb::AuthUserGrantRoleRequest {
    fn audit(&self) -> Option<(&'static str, Value)> {
        Some(("user_grant_role", json!({ "name": self.user, "role": self.role })))
    }
}

impl Audited for pb::AuthUserRevokeRoleRequest {
    fn audit(&self) -> Option<(&'static str, Value)> {
        Some(("user_revoke_role", json!({ "name": self.name, "role": self.role })))
    }
}

impl Audited for pb::AuthRoleAddRequest {
    fn audit(&self) -> Option<(&'static str, Value)> {
        Some(("role_add", json!({ "role": self.name })))
    }
}

impl Audited for pb::AuthRoleDeleteRequest {
    fn audit(&self) -> Option<(&'static str, Value)> {
        Some(("role_delete", json!({ "role": self.role })))
    }
}

impl Audited for pb::AuthRoleGrantPermissionRequest {
    fn audit(&self) -> Option<(&'static str, Value)> {
        let (perm_type, key, range_end) = match &self.perm {
            Some(p) => (perm_type_text(p.perm_type), key_text(&p.key), key_text(&p.range_end)),
            None => ("NONE", String::new(), String::new()),
        };
        Some((
            "role_grant_permission",
            json!({ "role": self.name, "perm_type": perm_type, "key": key, "range_end": range_end }),
        ))
    }
}

impl Audited for pb::AuthRoleRevokePermissionRequest {
    fn audit(&self) -> Option<(&'static str, Value)> {
        Some((
            "role_revoke_permission",
            json!({ "role": self.role, "key": key_text(&self.key), "range_end": key_text(&self.range_end) }),
        ))
    }
}

impl Audited for pb::MemberAddRequest {
    fn audit(&self) -> Option<(&'static str, Value)> {
        Some(("member_add", json!({ "peer_urls": self.peer_ur_ls, "learner": self.is_learner })))
    }
}

impl Audited for pb::MemberRemoveRequest {
    fn audit(&self) -> Option<(&'static str, Value)> {
        Some(("member_remove", json!({ "id": format!("{:x}", self.id) })))
    }
}

impl Audited for pb::MemberUpdateRequest {
    fn audit(&self) -> Option<(&'static str, Value)> {
        Some(("member_update", json!({ "id": format!("{:x}", self.id), "peer_urls": self.peer_ur_ls })))
    }
}

impl Audited for pb::MemberPromoteRequest {
    fn audit(&self) -> Option<(&'static str, Value)> {
        Some(("member_promote", json!({ "id": format!("{:x}", self.id) })))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn member() -> AuditMember {
        AuditMember { id: 0x1a, name: "m1".into() }
    }

    #[test]
    fn timestamps_are_rfc3339_utc_with_millis() {
        assert_eq!(rfc3339_utc_millis(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        // 2026-11-26T21:45:03.120Z (date -u -d @1795729503).
        let t = UNIX_EPOCH + Duration::from_millis(1_795_729_503_120);
        assert_eq!(rfc3339_utc_millis(t), "2026-11-26T21:45:03.120Z");
        // A leap day and the last millisecond of a year.
        let t = UNIX_EPOCH + Duration::from_secs(951_782_400);
        assert_eq!(rfc3339_utc_millis(t), "2000-02-29T00:00:00.000Z");
        let t = UNIX_EPOCH + Duration::from_millis(1_704_067_199_999);
        assert_eq!(rfc3339_utc_millis(t), "2023-12-31T23:59:59.999Z");
        assert_eq!(rfc3339_utc_millis(UNIX_EPOCH - Duration::from_secs(5)), "1970-01-01T00:00:00.000Z");
    }

    #[test]
    fn a_line_has_every_field_in_order() {
        let event = AuditEvent {
            event: "user_add",
            user: "root".into(),
            source: "127.0.0.1:53412".into(),
            outcome: Outcome::Ok,
            detail: json!({ "name": "alice", "no_password": false }),
        };
        let t = UNIX_EPOCH + Duration::from_millis(1_795_729_503_120);
        assert_eq!(
            audit_line(t, &member(), &event),
            r#"{"ts":"2026-11-26T21:45:03.120Z","event":"user_add","user":"root","source":"127.0.0.1:53412","member":{"id":"1a","name":"m1"},"outcome":"ok","detail":{"name":"alice","no_password":false}}"#
        );
    }

    #[test]
    fn a_line_is_one_line_whatever_the_input() {
        let event = AuditEvent {
            event: "authenticate",
            user: "eve\n{\"forged\":1}".into(),
            source: "local".into(),
            outcome: Outcome::Denied,
            detail: json!({ "name": "eve\n" }),
        };
        let line = audit_line(UNIX_EPOCH, &member(), &event);
        assert!(!line.contains('\n'), "{line}");
        let parsed: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(parsed["user"], "eve\n{\"forged\":1}");
        assert_eq!(parsed["outcome"], "denied");
    }

    #[test]
    fn no_password_reaches_a_record() {
        let add = pb::AuthUserAddRequest {
            name: "alice".into(),
            password: "s3cret-pw".into(),
            hashed_password: "aGFzaA==".into(),
            ..Default::default()
        };
        let change = pb::AuthUserChangePasswordRequest {
            name: "alice".into(),
            password: "s3cret-pw".into(),
            hashed_password: "aGFzaA==".into(),
        };
        let login = pb::AuthenticateRequest { name: "alice".into(), password: "s3cret-pw".into() };
        for (event, detail) in [add.audit().unwrap(), change.audit().unwrap(), login.audit().unwrap()] {
            let text = detail.to_string();
            assert!(!text.contains("s3cret") && !text.contains("aGFzaA"), "{event}: {text}");
        }
        assert_eq!(login.audit_user(), Some("alice"));
        assert_eq!(pb::PutRequest::default().audit(), None);
    }

    #[test]
    fn details_name_what_changed() {
        let grant = pb::AuthRoleGrantPermissionRequest {
            name: "reader".into(),
            perm: Some(crate::pb::authpb::Permission {
                perm_type: 0,
                key: b"app/".to_vec(),
                range_end: b"app0".to_vec(),
            }),
        };
        assert_eq!(
            grant.audit(),
            Some((
                "role_grant_permission",
                json!({ "role": "reader", "perm_type": "READ", "key": "app/", "range_end": "app0" })
            ))
        );
        let remove = pb::MemberRemoveRequest { id: 0xbeef };
        assert_eq!(remove.audit(), Some(("member_remove", json!({ "id": "beef" }))));
    }

    #[test]
    fn refusals_are_denied_and_failures_errors() {
        assert_eq!(Outcome::of_status(&Status::permission_denied("etcdserver: permission denied")), Outcome::Denied);
        let failed = Status::invalid_argument("etcdserver: authentication failed, invalid user ID or password");
        assert_eq!(Outcome::of_status(&failed), Outcome::Denied);
        assert_eq!(Outcome::of_status(&Status::unavailable("etcdserver: no leader")), Outcome::Error);
        assert_eq!(Outcome::of_status(&Status::failed_precondition("etcdserver: user name not found")), Outcome::Error);
    }
}
