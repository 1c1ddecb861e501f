//! Authentication and role-based access control: etcd's auth store, as part
//! of the replicated KV state.
//!
//! The [`AuthStore`] holds users (a bcrypt hash, granted roles, the
//! `no_password` option), roles (key permissions: a key or range, READ, WRITE
//! or READWRITE), whether auth is enabled, and the *auth revision*, bumped on
//! every change of users, roles or permissions and on `AuthDisable` (as etcd's
//! `commitRevision`). It changes only through [`AuthCommand`]s applied from the
//! log, with etcd's rules and errors (`server/auth/store.go`):
//!
//! - `AuthEnable` needs a user `root` holding the role `root`; enabling twice
//!   is a no-op. While enabled, the `root` user cannot be deleted nor lose the
//!   `root` role, and the `root` role cannot be deleted
//!   ([`AuthError::InvalidAuthMgmt`]).
//! - The role `root` may be granted without being added; it grants every
//!   permission, and `RoleGet root` shows READWRITE on every key.
//! - Passwords arrive already hashed: the API layer hashes with a random salt
//!   before proposing (as etcd 3.5's `hashedPassword`), so applying stays
//!   deterministic. Password checks happen in the API layer too.
//!
//! Permission checks ([`AuthStore::check_op`], [`AuthStore::check_admin`])
//! follow etcd's `isOpPermitted` and `IsAdminPermitted`: a range is permitted
//! when the union of the user's roles' ranges of that type covers it
//! (`range_perm_cache.go`), a single key when one range holds it.
//!
//! Storage layout (beside the KV records, see [`crate::kv::layout`]):
//!
//! ```text
//! "am/enabled"        [0 | 1]
//! "am/revision"       u64 LE
//! "au" ++ user name   StoredUser { password_hash, roles, no_password }
//! "ar" ++ role name   StoredRole { perms }
//! ```
//! Being in the storage, the auth state is part of every snapshot, of the
//! storage dump replicas compare and of the `Hash` RPC.

use std::collections::BTreeMap;

use rkyv::rancor;
use rkyv::{Archive, Deserialize, Serialize};

use super::layout::{aligned, to_bytes};
use super::request::{KvCommand, LeaseId, RequestOp};
use super::storage::WriteBatch;

/// The user that must exist (with [`ROOT_ROLE`]) before auth is enabled.
pub const ROOT_USER: &str = "root";
/// The role that grants every permission.
pub const ROOT_ROLE: &str = "root";
/// The auth revision of a store that never changed (etcd starts at 1 too).
pub const FIRST_AUTH_REVISION: u64 = 1;

/// The storage key of the enabled flag.
pub const AUTH_ENABLED_KEY: &[u8] = b"am/enabled";
/// The storage key of the auth revision.
pub const AUTH_REVISION_KEY: &[u8] = b"am/revision";
/// The prefix of user records.
pub const AUTH_USER_PREFIX: &[u8] = b"au";
/// The prefix of role records.
pub const AUTH_ROLE_PREFIX: &[u8] = b"ar";

/// What a permission allows (etcd's `authpb.Permission.Type`).
#[derive(Archive, Serialize, Deserialize, Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
pub enum PermType {
    /// Ranges, and compares of txns.
    #[default]
    Read,
    /// Puts and deletes.
    Write,
    /// Both.
    ReadWrite,
}

impl PermType {
    /// True if this type allows operations of type `wanted` (`Read` or `Write`).
    pub fn allows(self, wanted: PermType) -> bool {
        self == PermType::ReadWrite || self == wanted
    }
}

/// A key permission of a role (etcd's `authpb.Permission`).
#[derive(Archive, Serialize, Deserialize, Debug, Clone, Default, PartialEq, Eq)]
pub struct Permission {
    /// What it allows.
    pub perm_type: PermType,
    /// The key, or the first key of the range.
    pub key: Vec<u8>,
    /// Empty: `key` alone; `[0]`: every key `>= key`; otherwise `[key, range_end)`.
    pub range_end: Vec<u8>,
}

/// A user.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, Default, PartialEq, Eq)]
pub struct User {
    /// The bcrypt hash of the password (empty for a `no_password` user).
    pub password_hash: Vec<u8>,
    /// The granted roles, sorted and unique.
    pub roles: Vec<String>,
    /// The user cannot authenticate with a password (etcd's `UserAddOptions`).
    pub no_password: bool,
}

impl User {
    /// True if the user holds the `root` role.
    pub fn is_root(&self) -> bool {
        self.roles.binary_search_by(|r| r.as_str().cmp(ROOT_ROLE)).is_ok()
    }
}

/// A role: its key permissions, sorted by key.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, Default, PartialEq, Eq)]
pub struct Role {
    /// The permissions.
    pub perms: Vec<Permission>,
}

/// Why an auth command or check failed. [`std::fmt::Display`] gives etcd's
/// text (`api/v3rpc/rpctypes/error.go`); [`AuthError::grpc_code`] its code.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthError {
    /// `AuthEnable` without a `root` user.
    RootUserNotExist,
    /// `AuthEnable` while the `root` user lacks the `root` role.
    RootRoleNotExist,
    /// `UserAdd` of an existing user.
    UserAlreadyExist,
    /// An empty user name, or a request without a user while auth is enabled.
    UserEmpty,
    /// The user does not exist.
    UserNotFound,
    /// `RoleAdd` of an existing role.
    RoleAlreadyExist,
    /// The role does not exist.
    RoleNotFound,
    /// An empty role name.
    RoleEmpty,
    /// Unknown user, wrong password, or a `no_password` user.
    AuthFailed,
    /// `RoleGrantPermission` without a permission.
    PermissionNotGiven,
    /// The user's roles do not allow the request.
    PermissionDenied,
    /// `UserRevokeRole` of a role the user does not hold.
    RoleNotGranted,
    /// `RoleRevokePermission` of a permission the role does not hold.
    PermissionNotGranted,
    /// `Authenticate` while auth is disabled.
    AuthNotEnabled,
    /// The token is unknown, expired or forged.
    InvalidAuthToken,
    /// Deleting the `root` user or role, or revoking `root` from `root`, while
    /// auth is enabled.
    InvalidAuthMgmt,
    /// The token was issued at an auth revision older than the store's.
    AuthOldRevision,
}

impl AuthError {
    /// The gRPC status code etcd sends with the error, by its canonical name.
    pub fn grpc_code(&self) -> &'static str {
        match self {
            AuthError::RootUserNotExist
            | AuthError::RootRoleNotExist
            | AuthError::UserAlreadyExist
            | AuthError::UserNotFound
            | AuthError::RoleAlreadyExist
            | AuthError::RoleNotFound
            | AuthError::RoleNotGranted
            | AuthError::PermissionNotGranted
            | AuthError::AuthNotEnabled => "FAILED_PRECONDITION",
            AuthError::UserEmpty
            | AuthError::RoleEmpty
            | AuthError::AuthFailed
            | AuthError::PermissionNotGiven
            | AuthError::InvalidAuthMgmt
            | AuthError::AuthOldRevision => "INVALID_ARGUMENT",
            AuthError::PermissionDenied => "PERMISSION_DENIED",
            AuthError::InvalidAuthToken => "UNAUTHENTICATED",
        }
    }
}

impl std::fmt::Display for AuthError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            AuthError::RootUserNotExist => "etcdserver: root user does not exist",
            AuthError::RootRoleNotExist => "etcdserver: root user does not have root role",
            AuthError::UserAlreadyExist => "etcdserver: user name already exists",
            AuthError::UserEmpty => "etcdserver: user name is empty",
            AuthError::UserNotFound => "etcdserver: user name not found",
            AuthError::RoleAlreadyExist => "etcdserver: role name already exists",
            AuthError::RoleNotFound => "etcdserver: role name not found",
            AuthError::RoleEmpty => "etcdserver: role name is empty",
            AuthError::AuthFailed => "etcdserver: authentication failed, invalid user ID or password",
            AuthError::PermissionNotGiven => "etcdserver: permission not given",
            AuthError::PermissionDenied => "etcdserver: permission denied",
            AuthError::RoleNotGranted => "etcdserver: role is not granted to the user",
            AuthError::PermissionNotGranted => "etcdserver: permission is not granted to the role",
            AuthError::AuthNotEnabled => "etcdserver: authentication is not enabled",
            AuthError::InvalidAuthToken => "etcdserver: invalid auth token",
            AuthError::InvalidAuthMgmt => "etcdserver: invalid auth management",
            AuthError::AuthOldRevision => "etcdserver: revision of auth store is old",
        })
    }
}

impl std::error::Error for AuthError {}

/// A change of the auth state, as proposed through the log.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub enum AuthCommand {
    /// Turn auth on (needs `root` with the `root` role).
    Enable,
    /// Turn auth off.
    Disable,
    /// Add a user.
    UserAdd {
        /// The name (not empty).
        name: String,
        /// The bcrypt hash of the password, computed before proposing.
        password_hash: Vec<u8>,
        /// The user authenticates without a password only (by TLS name in
        /// etcd); the hash is ignored.
        no_password: bool,
    },
    /// Delete a user.
    UserDelete {
        /// The user.
        name: String,
    },
    /// Replace a user's password hash.
    UserChangePassword {
        /// The user.
        name: String,
        /// The new bcrypt hash.
        password_hash: Vec<u8>,
    },
    /// Grant a role to a user.
    UserGrantRole {
        /// The user.
        user: String,
        /// The role (must exist, except `root`).
        role: String,
    },
    /// Revoke a role from a user.
    UserRevokeRole {
        /// The user.
        name: String,
        /// The role.
        role: String,
    },
    /// Add a role without permissions.
    RoleAdd {
        /// The name (not empty).
        name: String,
    },
    /// Delete a role, revoking it from every user.
    RoleDelete {
        /// The role.
        name: String,
    },
    /// Grant a permission to a role (replacing the type of one on the same
    /// range).
    RoleGrantPermission {
        /// The role.
        name: String,
        /// The permission.
        perm: Permission,
    },
    /// Revoke the permission on exactly `[key, range_end)` from a role.
    RoleRevokePermission {
        /// The role.
        name: String,
        /// The permission's key.
        key: Vec<u8>,
        /// The permission's range end.
        range_end: Vec<u8>,
    },
    /// Issue a simple token for a user whose password the proposing member
    /// checked: every member learns the token `token_prefix.index` (etcd's
    /// `InternalAuthenticateRequest`). Changes no state.
    Authenticate {
        /// The user.
        name: String,
        /// A random prefix chosen by the proposing member.
        token_prefix: String,
        /// The auth revision at which the password was checked: if the store
        /// moved on since (the password may have changed), authentication
        /// fails with [`AuthError::AuthOldRevision`] and is retried.
        checked_revision: u64,
    },
}

/// What applying an auth command tells the member's API layer (local, not
/// replicated: the simple-token table lives there, with its clock).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthEvent {
    /// A simple token was issued for `user`.
    TokenIssued {
        /// The token.
        token: String,
        /// Its user.
        user: String,
    },
    /// The user was deleted or its password changed: its tokens are void.
    UserInvalidated {
        /// The user.
        user: String,
    },
    /// Auth was disabled, or the whole state replaced: every token is void.
    Reset,
}

/// Who makes a request: the user and the auth revision their token carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthInfo {
    /// The user name.
    pub user: String,
    /// The auth revision the token was issued at (simple tokens: the current
    /// one, as etcd's simple tokens do not carry a revision).
    pub revision: u64,
}

#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
struct StoredUser {
    password_hash: Vec<u8>,
    roles: Vec<String>,
    no_password: bool,
}

#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
struct StoredRole {
    perms: Vec<Permission>,
}

/// A key interval `[begin, end)`; `end == None` is unbounded.
type Interval<'a> = (&'a [u8], Option<&'a [u8]>);

/// The interval a permission or request names: `range_end` empty is the key
/// alone (`[key, key\0)`), `[0]` every key from `key` on.
fn interval<'a>(key: &'a [u8], range_end: &'a [u8], point_end: &'a mut Vec<u8>) -> Interval<'a> {
    if range_end.is_empty() {
        point_end.clear();
        point_end.extend_from_slice(key);
        point_end.push(0);
        (key, Some(point_end.as_slice()))
    } else if range_end == [0] {
        (key, None)
    } else {
        (key, Some(range_end))
    }
}

/// True if the union of `granted` covers `wanted` completely.
fn covers(granted: &mut [Interval<'_>], wanted: Interval<'_>) -> bool {
    granted.sort_unstable_by(|a, b| a.0.cmp(b.0));
    let (mut reached, wanted_end) = (wanted.0, wanted.1);
    if wanted_end.is_some_and(|end| end <= reached) {
        // An empty range (`range_end <= key`) holds no key: etcd's interval
        // tree finds it covered by nothing, so it is refused below unless a
        // grant contains its start.
        return granted.iter().any(|&(b, e)| b <= reached && e.is_none_or(|e| reached < e));
    }
    for &(begin, end) in granted.iter() {
        if begin > reached {
            break;
        }
        match end {
            None => return true,
            Some(end) if end > reached => reached = end,
            Some(_) => {}
        }
        if wanted_end.is_some_and(|w| reached >= w) {
            return true;
        }
    }
    false
}

/// The replicated auth state. See the module doc.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthStore {
    enabled: bool,
    revision: u64,
    users: BTreeMap<String, User>,
    roles: BTreeMap<String, Role>,
}

impl Default for AuthStore {
    fn default() -> AuthStore {
        AuthStore { enabled: false, revision: FIRST_AUTH_REVISION, users: BTreeMap::new(), roles: BTreeMap::new() }
    }
}

fn user_key(name: &str) -> Vec<u8> {
    [AUTH_USER_PREFIX, name.as_bytes()].concat()
}

fn role_key(name: &str) -> Vec<u8> {
    [AUTH_ROLE_PREFIX, name.as_bytes()].concat()
}

impl AuthStore {
    /// No users, no roles, disabled, at [`FIRST_AUTH_REVISION`].
    pub fn new() -> AuthStore {
        AuthStore::default()
    }

    /// True when auth is enabled.
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// The auth revision.
    pub fn revision(&self) -> u64 {
        self.revision
    }

    /// The user `name`.
    pub fn user(&self, name: &str) -> Option<&User> {
        self.users.get(name)
    }

    /// Every user name, sorted.
    pub fn user_names(&self) -> Vec<String> {
        self.users.keys().cloned().collect()
    }

    /// The role `name`.
    pub fn role(&self, name: &str) -> Option<&Role> {
        self.roles.get(name)
    }

    /// Every role name, sorted.
    pub fn role_names(&self) -> Vec<String> {
        self.roles.keys().cloned().collect()
    }

    /// The permissions `RoleGet` shows: READWRITE on every key for `root`
    /// (etcd's `rootPerm`), the stored ones otherwise.
    pub fn role_permissions(&self, name: &str) -> Result<Vec<Permission>, AuthError> {
        let role = self.roles.get(name).ok_or(AuthError::RoleNotFound)?;
        if name == ROOT_ROLE {
            return Ok(vec![Permission { perm_type: PermType::ReadWrite, key: Vec::new(), range_end: vec![0] }]);
        }
        Ok(role.perms.clone())
    }

    /// Whether `caller` may do an operation of type `wanted` (`Read` or
    /// `Write`) on `[key, range_end)` (etcd's `isOpPermitted`). Always allowed
    /// while auth is disabled.
    pub fn check_op(
        &self,
        caller: Option<&AuthInfo>,
        key: &[u8],
        range_end: &[u8],
        wanted: PermType,
    ) -> Result<(), AuthError> {
        if !self.enabled {
            return Ok(());
        }
        let Some(caller) = caller.filter(|c| !c.user.is_empty()) else { return Err(AuthError::UserEmpty) };
        if caller.revision < self.revision {
            return Err(AuthError::AuthOldRevision);
        }
        let user = self.users.get(&caller.user).ok_or(AuthError::PermissionDenied)?;
        if user.is_root() || self.range_permitted(user, key, range_end, wanted) {
            Ok(())
        } else {
            Err(AuthError::PermissionDenied)
        }
    }

    /// Whether `caller` holds the root role (etcd's `IsAdminPermitted`).
    /// Always allowed while auth is disabled.
    pub fn check_admin(&self, caller: Option<&AuthInfo>) -> Result<(), AuthError> {
        if !self.enabled {
            return Ok(());
        }
        let Some(caller) = caller.filter(|c| !c.user.is_empty()) else { return Err(AuthError::UserEmpty) };
        let user = self.users.get(&caller.user).ok_or(AuthError::UserNotFound)?;
        if user.is_root() {
            Ok(())
        } else {
            Err(AuthError::PermissionDenied)
        }
    }

    fn range_permitted(&self, user: &User, key: &[u8], range_end: &[u8], wanted: PermType) -> bool {
        let perms: Vec<&Permission> = user
            .roles
            .iter()
            .filter_map(|r| self.roles.get(r))
            .flat_map(|r| &r.perms)
            .filter(|p| p.perm_type.allows(wanted))
            .collect();
        let mut ends: Vec<Vec<u8>> = vec![Vec::new(); perms.len()];
        let mut granted: Vec<Interval<'_>> =
            perms.iter().zip(ends.iter_mut()).map(|(p, end)| interval(&p.key, &p.range_end, end)).collect();
        let mut wanted_end = Vec::new();
        if range_end.is_empty() {
            // A single key: one grant must contain it.
            return granted.iter().any(|&(b, e)| b <= key && e.is_none_or(|e| key < e));
        }
        covers(&mut granted, interval(key, range_end, &mut wanted_end))
    }

    /// The checks `command` must pass, without changing anything.
    fn verify(&self, command: &AuthCommand) -> Result<(), AuthError> {
        let user = |name: &str| self.users.get(name).ok_or(AuthError::UserNotFound);
        let role = |name: &str| self.roles.get(name).ok_or(AuthError::RoleNotFound);
        match command {
            AuthCommand::Enable => {
                let root = self.users.get(ROOT_USER).ok_or(AuthError::RootUserNotExist)?;
                if !root.is_root() {
                    return Err(AuthError::RootRoleNotExist);
                }
            }
            AuthCommand::Disable => {}
            AuthCommand::UserAdd { name, .. } => {
                if name.is_empty() {
                    return Err(AuthError::UserEmpty);
                }
                if self.users.contains_key(name) {
                    return Err(AuthError::UserAlreadyExist);
                }
            }
            AuthCommand::UserDelete { name } => {
                if self.enabled && name == ROOT_USER {
                    return Err(AuthError::InvalidAuthMgmt);
                }
                user(name)?;
            }
            AuthCommand::UserChangePassword { name, .. } => {
                user(name)?;
            }
            AuthCommand::UserGrantRole { user: name, role: granted } => {
                user(name)?;
                if granted != ROOT_ROLE {
                    role(granted)?;
                }
            }
            AuthCommand::UserRevokeRole { name, role: revoked } => {
                if self.enabled && name == ROOT_USER && revoked == ROOT_ROLE {
                    return Err(AuthError::InvalidAuthMgmt);
                }
                if !user(name)?.roles.contains(revoked) {
                    return Err(AuthError::RoleNotGranted);
                }
            }
            AuthCommand::RoleAdd { name } => {
                if name.is_empty() {
                    return Err(AuthError::RoleEmpty);
                }
                if self.roles.contains_key(name) {
                    return Err(AuthError::RoleAlreadyExist);
                }
            }
            AuthCommand::RoleDelete { name } => {
                if self.enabled && name == ROOT_ROLE {
                    return Err(AuthError::InvalidAuthMgmt);
                }
                role(name)?;
            }
            AuthCommand::RoleGrantPermission { name, .. } => {
                role(name)?;
            }
            AuthCommand::RoleRevokePermission { name, key, range_end } => {
                if !role(name)?.perms.iter().any(|p| p.key == *key && p.range_end == *range_end) {
                    return Err(AuthError::PermissionNotGranted);
                }
            }
            AuthCommand::Authenticate { name, checked_revision, .. } => {
                if !self.enabled {
                    return Err(AuthError::AuthNotEnabled);
                }
                if self.users.get(name).is_none_or(|u| u.no_password) {
                    return Err(AuthError::AuthFailed);
                }
                if *checked_revision != self.revision {
                    return Err(AuthError::AuthOldRevision);
                }
            }
        }
        Ok(())
    }

    fn put_user(&mut self, name: &str, user: User, batch: &mut WriteBatch) {
        let stored = StoredUser {
            password_hash: user.password_hash.clone(),
            roles: user.roles.clone(),
            no_password: user.no_password,
        };
        batch.put(user_key(name), to_bytes(&stored));
        self.users.insert(name.to_string(), user);
    }

    fn put_role(&mut self, name: &str, role: Role, batch: &mut WriteBatch) {
        batch.put(role_key(name), to_bytes(&StoredRole { perms: role.perms.clone() }));
        self.roles.insert(name.to_string(), role);
    }

    fn bump(&mut self, batch: &mut WriteBatch) {
        self.revision += 1;
        batch.put(AUTH_REVISION_KEY.to_vec(), self.revision.to_le_bytes().to_vec());
    }

    /// Applies `command`, the log entry at `index`: its storage writes go to
    /// `batch`, what the API layer must learn to `events`. Returns the issued
    /// token for `Authenticate`, else an empty string. On error nothing
    /// changed.
    pub fn apply(
        &mut self,
        command: &AuthCommand,
        index: u64,
        batch: &mut WriteBatch,
        events: &mut Vec<AuthEvent>,
    ) -> Result<String, AuthError> {
        self.verify(command)?;
        match command {
            AuthCommand::Enable => {
                if !self.enabled {
                    self.enabled = true;
                    batch.put(AUTH_ENABLED_KEY.to_vec(), vec![1]);
                }
            }
            AuthCommand::Disable => {
                if self.enabled {
                    self.enabled = false;
                    batch.put(AUTH_ENABLED_KEY.to_vec(), vec![0]);
                    self.bump(batch);
                    events.push(AuthEvent::Reset);
                }
            }
            AuthCommand::UserAdd { name, password_hash, no_password } => {
                let password_hash = if *no_password { Vec::new() } else { password_hash.clone() };
                self.put_user(name, User { password_hash, roles: Vec::new(), no_password: *no_password }, batch);
                self.bump(batch);
            }
            AuthCommand::UserDelete { name } => {
                self.users.remove(name);
                batch.delete(user_key(name));
                self.bump(batch);
                events.push(AuthEvent::UserInvalidated { user: name.clone() });
            }
            AuthCommand::UserChangePassword { name, password_hash } => {
                let mut user = self.users[name].clone();
                user.password_hash = if user.no_password { Vec::new() } else { password_hash.clone() };
                self.put_user(name, user, batch);
                self.bump(batch);
                events.push(AuthEvent::UserInvalidated { user: name.clone() });
            }
            AuthCommand::UserGrantRole { user: name, role } => {
                let mut user = self.users[name].clone();
                if let Err(at) = user.roles.binary_search(role) {
                    user.roles.insert(at, role.clone());
                    self.put_user(name, user, batch);
                    self.bump(batch);
                }
            }
            AuthCommand::UserRevokeRole { name, role } => {
                let mut user = self.users[name].clone();
                user.roles.retain(|r| r != role);
                self.put_user(name, user, batch);
                self.bump(batch);
            }
            AuthCommand::RoleAdd { name } => {
                self.put_role(name, Role::default(), batch);
                self.bump(batch);
            }
            AuthCommand::RoleDelete { name } => {
                self.roles.remove(name);
                batch.delete(role_key(name));
                let holders: Vec<String> =
                    self.users.iter().filter(|(_, u)| u.roles.contains(name)).map(|(n, _)| n.clone()).collect();
                for holder in holders {
                    let mut user = self.users[&holder].clone();
                    user.roles.retain(|r| r != name);
                    self.put_user(&holder, user, batch);
                }
                self.bump(batch);
            }
            AuthCommand::RoleGrantPermission { name, perm } => {
                let mut role = self.roles[name].clone();
                match role.perms.iter_mut().find(|p| p.key == perm.key && p.range_end == perm.range_end) {
                    Some(existing) => existing.perm_type = perm.perm_type,
                    None => {
                        role.perms.push(perm.clone());
                        role.perms.sort_by(|a, b| a.key.cmp(&b.key));
                    }
                }
                self.put_role(name, role, batch);
                self.bump(batch);
            }
            AuthCommand::RoleRevokePermission { name, key, range_end } => {
                let mut role = self.roles[name].clone();
                role.perms.retain(|p| p.key != *key || p.range_end != *range_end);
                self.put_role(name, role, batch);
                self.bump(batch);
            }
            AuthCommand::Authenticate { name, token_prefix, .. } => {
                let token = format!("{token_prefix}.{index}");
                events.push(AuthEvent::TokenIssued { token: token.clone(), user: name.clone() });
                return Ok(token);
            }
        }
        Ok(String::new())
    }

    /// Reads one stored pair into the state if it is an auth record: `None`
    /// for other keys, an error for a corrupt record.
    pub fn load_pair(&mut self, key: &[u8], value: &[u8]) -> Option<Result<(), String>> {
        let name = |prefix: &[u8]| String::from_utf8(key[prefix.len()..].to_vec()).map_err(|e| e.to_string());
        let outcome = if key == AUTH_ENABLED_KEY {
            match value {
                [flag @ (0 | 1)] => {
                    self.enabled = *flag == 1;
                    Ok(())
                }
                _ => Err("bad auth enabled flag".to_string()),
            }
        } else if key == AUTH_REVISION_KEY {
            match <[u8; 8]>::try_from(value) {
                Ok(bytes) if u64::from_le_bytes(bytes) >= FIRST_AUTH_REVISION => {
                    self.revision = u64::from_le_bytes(bytes);
                    Ok(())
                }
                _ => Err("bad auth revision".to_string()),
            }
        } else if key.starts_with(AUTH_USER_PREFIX) {
            name(AUTH_USER_PREFIX).and_then(|name| {
                let u = rkyv::from_bytes::<StoredUser, rancor::Error>(&aligned(value)).map_err(|e| e.to_string())?;
                if name.is_empty() || u.roles.windows(2).any(|w| w[0] >= w[1]) {
                    return Err(format!("bad user record {name:?}"));
                }
                self.users
                    .insert(name, User { password_hash: u.password_hash, roles: u.roles, no_password: u.no_password });
                Ok(())
            })
        } else if key.starts_with(AUTH_ROLE_PREFIX) {
            name(AUTH_ROLE_PREFIX).and_then(|name| {
                let r = rkyv::from_bytes::<StoredRole, rancor::Error>(&aligned(value)).map_err(|e| e.to_string())?;
                if name.is_empty() {
                    return Err("bad role record".to_string());
                }
                self.roles.insert(name, Role { perms: r.perms });
                Ok(())
            })
        } else {
            return None;
        };
        Some(outcome)
    }
}

/// Whether `caller` may have `command` applied: etcd's `authApplierV3`
/// (`checkTxnReqsPermission`, `checkLeasePuts`, `IsAdminPermitted`). Always
/// while auth is disabled. `lease_keys` names the keys attached to a lease.
pub fn authorize(
    store: &AuthStore,
    caller: &AuthInfo,
    command: &KvCommand,
    lease_keys: &dyn Fn(LeaseId) -> Vec<Vec<u8>>,
) -> Result<(), AuthError> {
    if !store.enabled() {
        return Ok(());
    }
    let caller = Some(caller);
    let op = |key: &[u8], range_end: &[u8], wanted| store.check_op(caller, key, range_end, wanted);
    let lease_puts = |lease: LeaseId| -> Result<(), AuthError> {
        if lease == 0 {
            return Ok(());
        }
        lease_keys(lease).iter().try_for_each(|key| op(key, &[], PermType::Write))
    };
    let put = |p: &super::request::PutRequest| -> Result<(), AuthError> {
        op(&p.key, &[], PermType::Write)?;
        lease_puts(p.lease)?;
        if p.prev_kv {
            op(&p.key, &[], PermType::Read)?;
        }
        Ok(())
    };
    let delete = |d: &super::request::DeleteRangeRequest| -> Result<(), AuthError> {
        op(&d.key, &d.range_end, PermType::Write)?;
        if d.prev_kv {
            op(&d.key, &d.range_end, PermType::Read)?;
        }
        Ok(())
    };
    match command {
        KvCommand::Put(p) => put(p),
        KvCommand::DeleteRange(d) => delete(d),
        KvCommand::Txn(t) => {
            let mut pending = vec![t];
            while let Some(txn) = pending.pop() {
                for compare in &txn.compare {
                    op(&compare.key, &compare.range_end, PermType::Read)?;
                }
                for request in txn.success.iter().chain(&txn.failure) {
                    match request {
                        RequestOp::Range(r) => op(&r.key, &r.range_end, PermType::Read)?,
                        RequestOp::Put(p) => put(p)?,
                        RequestOp::DeleteRange(d) => delete(d)?,
                        RequestOp::Txn(nested) => pending.push(nested),
                    }
                }
            }
            Ok(())
        }
        KvCommand::LeaseRevoke(r) => lease_puts(r.id),
        KvCommand::LeaseGrant(_) | KvCommand::LeaseCheckpoint(_) => Ok(()),
        KvCommand::Auth(AuthCommand::Enable | AuthCommand::Authenticate { .. }) => Ok(()),
        KvCommand::Compaction(_) | KvCommand::Alarm(_) | KvCommand::Auth(_) => store.check_admin(caller),
        KvCommand::AsUser(_) => Err(AuthError::PermissionDenied),
    }
}

#[cfg(test)]
#[path = "auth_tests.rs"]
mod tests;
