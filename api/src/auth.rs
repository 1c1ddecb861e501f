//! etcd's authentication in the API layer: tokens, password hashing and the
//! permission every RPC needs.
//!
//! The auth state itself (users, roles, permissions, enabled, auth revision)
//! is replicated in core ([`lockstep_core::kv::AuthStore`]); this module does
//! what must not happen in a deterministic state machine:
//!
//! - **Passwords** are hashed with bcrypt and a random salt *before* a
//!   `UserAdd`/`UserChangePassword` is proposed (etcd 3.5's
//!   `hashedPassword`), and checked by `Authenticate` against the member's
//!   linearizably read store. bcrypt is slow by design (cost 10: tens of
//!   milliseconds); both run through [`Backend::offload`], which a member runs
//!   on a blocking thread pool instead of its executor.
//! - **Tokens**, in gRPC metadata `token` (the JSON gateway: the
//!   `Authorization` header):
//!   - *simple* (etcd's default, `simple_token.go`): `Authenticate` proposes
//!     [`AuthCommand::Authenticate`] with 16 random letters; every member
//!     applies it and learns the token `letters.index` through
//!     [`Backend::take_auth_events`], so a token works on every member. Each
//!     member keeps its tokens in memory with a TTL (300 s by default)
//!     renewed on every use; deleting a user, changing its password or
//!     disabling auth voids its tokens; a restart voids them all.
//!   - *JWT* (`jwt.go`): signed with the configured key, claims `username`,
//!     `revision` (the auth revision at issue) and `exp`; no Raft round.
//! - **Checks** ([`Cx`]): the caller's token is resolved once per request;
//!   `Authorize` names what each request needs (etcd's `isOpPermitted`,
//!   `IsAdminPermitted`, `checkTxnReqsPermission`, `checkLeasePuts`), checked
//!   against the member's applied auth store when the request arrives (a
//!   refusal only after catching up with the leader), and writes carry their
//!   sender ([`KvCommand::AsUser`]) so that the state machine checks them
//!   again when applying (core's `auth::authorize`), as etcd does.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use lockstep_core::kv::{
    self, AuthCommand, AuthError, AuthEvent, AuthInfo, AuthStore, KvCommand, KvError, KvQuery, KvResponse, PermType,
};
use serde_json::{json, Value};
use tonic::Status;

use crate::audit::{AuditEvent, AuditSink, Audited, Outcome};
use crate::backend::Backend;
use crate::limits::Limiter;
use crate::pb::authpb;
use crate::pb::etcdserverpb as pb;
use crate::status::kv_error;

/// etcd's default bcrypt cost (`bcrypt.DefaultCost`).
pub const BCRYPT_COST_DEFAULT: u32 = 10;
/// The lowest bcrypt cost (bcrypt's minimum; tests use it).
pub const BCRYPT_COST_MIN: u32 = 4;
/// The highest bcrypt cost.
pub const BCRYPT_COST_MAX: u32 = 31;
/// etcd's default simple-token TTL (`--auth-token-ttl`, 300 s).
pub const SIMPLE_TOKEN_TTL_DEFAULT: Duration = Duration::from_secs(300);
/// etcd's default JWT TTL (5 minutes).
pub const JWT_TTL_DEFAULT: Duration = Duration::from_secs(300);
/// The length of a simple token's random part (etcd's `defaultSimpleTokenLength`).
const SIMPLE_TOKEN_LETTERS: usize = 16;
/// Simple tokens a member keeps; past this the oldest-expiring go first.
const SIMPLE_TOKENS_MAX: usize = 100_000;
/// Verified JWTs remembered per member.
const VERIFIED_JWTS_MAX: usize = 10_000;
/// How often `Authenticate` retries when the auth store changed while the
/// password was being checked.
const AUTHENTICATE_ATTEMPTS_MAX: u32 = 5;

/// An auth error as etcd's status.
pub fn auth_status(e: AuthError) -> Status {
    kv_error(&KvError::Auth(e))
}

/// How JWTs are signed and checked.
#[derive(Clone)]
pub struct JwtConfig {
    algorithm: jsonwebtoken::Algorithm,
    /// `None`: verify-only (no private key): `Authenticate` fails.
    signing: Option<jsonwebtoken::EncodingKey>,
    verifying: jsonwebtoken::DecodingKey,
    ttl: Duration,
}

impl std::fmt::Debug for JwtConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtConfig")
            .field("algorithm", &self.algorithm)
            .field("signs", &self.signing.is_some())
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

/// Which tokens `Authenticate` issues.
#[derive(Debug, Clone)]
pub enum TokenConfig {
    /// etcd's simple tokens (see the module doc).
    Simple,
    /// JSON web tokens.
    Jwt(JwtConfig),
}

/// Parses a duration as Go's `time.ParseDuration` writes the common ones:
/// `300s`, `5m`, `1h30m`, `1500ms`.
fn parse_go_duration(text: &str) -> Result<Duration, String> {
    let bad = || format!("invalid duration {text:?}");
    let mut rest = text;
    let mut total = Duration::ZERO;
    if rest.is_empty() {
        return Err(bad());
    }
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
        let number: u64 = rest[..digits].parse().map_err(|_| bad())?;
        rest = &rest[digits..];
        let unit = rest.find(|c: char| c.is_ascii_digit()).unwrap_or(rest.len());
        let millis = match &rest[..unit] {
            "ms" => 1,
            "s" => 1000,
            "m" => 60_000,
            "h" => 3_600_000,
            _ => return Err(bad()),
        };
        total += Duration::from_millis(number.saturating_mul(millis));
        rest = &rest[unit..];
    }
    Ok(total)
}

impl TokenConfig {
    /// Parses etcd's `--auth-token` value: `simple`, or
    /// `jwt,pub-key=PATH,priv-key=PATH,sign-method=METHOD[,ttl=DURATION]`
    /// (methods RS256/384/512, PS256/384/512, ES256/384, EdDSA, HS256/384/512;
    /// HMAC methods use the `priv-key` file's bytes as the secret). Key files
    /// are read with `read`.
    pub fn parse(option: &str, read: impl Fn(&str) -> Result<Vec<u8>, String>) -> Result<TokenConfig, String> {
        let mut parts = option.split(',');
        let kind = parts.next().unwrap_or_default();
        let mut options = BTreeMap::new();
        for part in parts {
            let (name, value) = part
                .split_once('=')
                .filter(|(_, v)| !v.contains('='))
                .ok_or_else(|| format!("invalid auth token option {part:?} (want name=value)"))?;
            if options.insert(name, value).is_some() {
                return Err(format!("auth token option {name:?} given twice"));
            }
        }
        match kind {
            "simple" if options.is_empty() => Ok(TokenConfig::Simple),
            "simple" => Err("the simple token takes no options".into()),
            "jwt" => {
                for name in options.keys() {
                    if !["pub-key", "priv-key", "sign-method", "ttl"].contains(name) {
                        return Err(format!("unknown jwt option {name:?}"));
                    }
                }
                let method = options.get("sign-method").ok_or("jwt needs sign-method=...")?;
                let ttl = options.get("ttl").map_or(Ok(JWT_TTL_DEFAULT), |t| parse_go_duration(t))?;
                JwtConfig::new(method, options.get("pub-key").copied(), options.get("priv-key").copied(), ttl, read)
                    .map(TokenConfig::Jwt)
            }
            other => Err(format!("unknown auth token type {other:?} (want simple or jwt,...)")),
        }
    }
}

impl JwtConfig {
    fn new(
        method: &str,
        public: Option<&str>,
        private: Option<&str>,
        ttl: Duration,
        read: impl Fn(&str) -> Result<Vec<u8>, String>,
    ) -> Result<JwtConfig, String> {
        use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey};
        let algorithm: Algorithm = method.parse().map_err(|_| format!("invalid jwt sign-method {method:?}"))?;
        let key_error = |what: &str, e: jsonwebtoken::errors::Error| format!("jwt {what}: {e}");
        let (signing, verifying) = match algorithm {
            Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512 => {
                let secret = read(private.ok_or("an HMAC jwt needs priv-key=FILE (the secret)")?)?;
                if secret.is_empty() {
                    return Err("the jwt secret file is empty".into());
                }
                (Some(EncodingKey::from_secret(&secret)), DecodingKey::from_secret(&secret))
            }
            _ => {
                let public = read(public.ok_or("jwt needs pub-key=FILE")?)?;
                let verifying = match algorithm {
                    Algorithm::ES256 | Algorithm::ES384 => DecodingKey::from_ec_pem(&public),
                    Algorithm::EdDSA => DecodingKey::from_ed_pem(&public),
                    _ => DecodingKey::from_rsa_pem(&public),
                }
                .map_err(|e| key_error("pub-key", e))?;
                let signing = match private {
                    None => None,
                    Some(path) => {
                        let private = read(path)?;
                        Some(
                            match algorithm {
                                Algorithm::ES256 | Algorithm::ES384 => EncodingKey::from_ec_pem(&private),
                                Algorithm::EdDSA => EncodingKey::from_ed_pem(&private),
                                _ => EncodingKey::from_rsa_pem(&private),
                            }
                            .map_err(|e| key_error("priv-key", e))?,
                        )
                    }
                };
                (signing, verifying)
            }
        };
        let config = JwtConfig { algorithm, signing, verifying, ttl };
        // etcd refuses keys that do not belong together (ErrKeyMismatch).
        if config.signing.is_some() {
            let probe = config.sign("probe", 1, SystemTime::now())?;
            if config.verify(&probe, SystemTime::now()).is_none() {
                return Err("jwt: public and private keys don't match".into());
            }
        }
        Ok(config)
    }

    fn sign(&self, user: &str, revision: u64, now: SystemTime) -> Result<String, String> {
        let key = self.signing.as_ref().ok_or("jwt: token signing attempted with verify-only key")?;
        let exp = now.checked_add(self.ttl).unwrap_or(now).duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
        let claims = JwtClaims { username: user.to_string(), revision, exp };
        jsonwebtoken::encode(&jsonwebtoken::Header::new(self.algorithm), &claims, key).map_err(|e| e.to_string())
    }

    fn verify(&self, token: &str, now: SystemTime) -> Option<AuthInfo> {
        self.verify_until(token, now).map(|(info, _)| info)
    }

    /// The token's sender and expiry (seconds since the epoch), if it is
    /// valid at `now`.
    fn verify_until(&self, token: &str, now: SystemTime) -> Option<(AuthInfo, u64)> {
        let mut validation = jsonwebtoken::Validation::new(self.algorithm);
        validation.leeway = 0;
        validation.validate_exp = false;
        let data = jsonwebtoken::decode::<JwtClaims>(token, &self.verifying, &validation).ok()?;
        let now_s = now.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
        if data.claims.exp <= now_s || data.claims.username.is_empty() {
            return None;
        }
        Some((AuthInfo { user: data.claims.username, revision: data.claims.revision }, data.claims.exp))
    }
}

#[derive(serde::Serialize, serde::Deserialize)]
struct JwtClaims {
    username: String,
    revision: u64,
    exp: u64,
}

/// Auth settings of a member.
#[derive(Debug, Clone)]
pub struct AuthConfig {
    /// Which tokens `Authenticate` issues.
    pub token: TokenConfig,
    /// A simple token's time to live, renewed on every use.
    pub simple_token_ttl: Duration,
    /// The bcrypt cost of new password hashes (4 to 31).
    pub bcrypt_cost: u32,
}

impl Default for AuthConfig {
    fn default() -> AuthConfig {
        AuthConfig {
            token: TokenConfig::Simple,
            simple_token_ttl: SIMPLE_TOKEN_TTL_DEFAULT,
            bcrypt_cost: BCRYPT_COST_DEFAULT,
        }
    }
}

/// A member's tokens and auth settings; one per member, shared by its
/// connections.
pub struct Authenticator {
    config: AuthConfig,
    /// Simple token → (user, expiry).
    simple: RefCell<BTreeMap<String, (String, Instant)>>,
    /// JWTs verified already → (sender, expiry in seconds since the epoch):
    /// a signature check (RSA, ECDSA) costs tens of microseconds on the
    /// member's executor, so each token is verified once.
    verified: RefCell<BTreeMap<String, (AuthInfo, u64)>>,
    clock: Box<dyn Fn() -> Instant>,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator")
            .field("config", &self.config)
            .field("simple_tokens", &self.simple.borrow().len())
            .finish_non_exhaustive()
    }
}

impl Default for Authenticator {
    fn default() -> Authenticator {
        Authenticator::new(AuthConfig::default())
    }
}

impl Authenticator {
    /// An authenticator with `config` and the system's monotonic clock.
    pub fn new(config: AuthConfig) -> Authenticator {
        Authenticator::with_clock(config, Box::new(Instant::now))
    }

    /// The same with another clock (tests move time forward with it).
    pub fn with_clock(config: AuthConfig, clock: Box<dyn Fn() -> Instant>) -> Authenticator {
        let cost = config.bcrypt_cost.clamp(BCRYPT_COST_MIN, BCRYPT_COST_MAX);
        Authenticator {
            config: AuthConfig { bcrypt_cost: cost, ..config },
            simple: RefCell::new(BTreeMap::new()),
            verified: RefCell::new(BTreeMap::new()),
            clock,
        }
    }

    /// The settings.
    pub fn config(&self) -> &AuthConfig {
        &self.config
    }

    /// Applies what the state machine reported (issued and voided tokens).
    fn absorb(&self, backend: &dyn Backend) {
        let events = backend.take_auth_events();
        if events.is_empty() {
            return;
        }
        let now = (self.clock)();
        let mut tokens = self.simple.borrow_mut();
        for event in events {
            match event {
                AuthEvent::TokenIssued { token, user } => {
                    if matches!(self.config.token, TokenConfig::Simple) {
                        tokens.insert(token, (user, now + self.config.simple_token_ttl));
                    }
                }
                AuthEvent::UserInvalidated { user } => tokens.retain(|_, (u, _)| *u != user),
                AuthEvent::Reset => tokens.clear(),
            }
        }
        if tokens.len() > SIMPLE_TOKENS_MAX {
            tokens.retain(|_, (_, expiry)| *expiry > now);
            while tokens.len() > SIMPLE_TOKENS_MAX {
                let oldest = tokens.iter().min_by_key(|(_, (_, e))| *e).map(|(t, _)| t.clone());
                if let Some(token) = oldest {
                    tokens.remove(&token);
                }
            }
        }
    }

    /// The user of a simple token, renewing it; `None` if unknown or expired.
    fn simple_user(&self, token: &str) -> Option<String> {
        let now = (self.clock)();
        let mut tokens = self.simple.borrow_mut();
        let (user, expiry) = tokens.get_mut(token)?;
        if *expiry <= now {
            tokens.remove(token);
            return None;
        }
        *expiry = now + self.config.simple_token_ttl;
        Some(user.clone())
    }

    fn lookup(&self, backend: &dyn Backend, store: &AuthStore, token: &str) -> Option<AuthInfo> {
        match &self.config.token {
            TokenConfig::Simple => {
                self.absorb(backend);
                // etcd's simple tokens carry no revision: the current one.
                self.simple_user(token).map(|user| AuthInfo { user, revision: store.revision() })
            }
            TokenConfig::Jwt(jwt) => {
                let now = SystemTime::now();
                let now_s = now.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
                let mut verified = self.verified.borrow_mut();
                if let Some((info, exp)) = verified.get(token) {
                    if *exp > now_s {
                        return Some(info.clone());
                    }
                }
                let (info, exp) = jwt.verify_until(token, now)?;
                if verified.len() >= VERIFIED_JWTS_MAX {
                    verified.retain(|_, (_, exp)| *exp > now_s);
                    if verified.len() >= VERIFIED_JWTS_MAX {
                        verified.clear();
                    }
                }
                verified.insert(token.to_string(), (info.clone(), exp));
                Some(info)
            }
        }
    }

    /// The token a request carries: gRPC metadata `token`, or the JSON
    /// gateway's `Authorization` header.
    pub fn token_of(headers: &http::HeaderMap) -> Option<String> {
        ["token", "authorization"]
            .iter()
            .find_map(|name| headers.get(*name).and_then(|v| v.to_str().ok()))
            .map(str::to_string)
    }

    /// Who sends a request with `token`: `None` while auth is disabled or
    /// without a token, else the token's user, or etcd's "invalid auth
    /// token". A simple token this member does not know yet (issued by an
    /// entry it has not applied) is looked up again after a linearizable
    /// barrier.
    pub async fn caller(&self, backend: &dyn Backend, token: Option<&str>) -> Caller {
        if !backend.auth().enabled() {
            self.absorb(backend);
            return Ok(None);
        }
        let Some(token) = token else { return Ok(None) };
        if let Some(info) = self.lookup(backend, &backend.auth(), token) {
            return Ok(Some(info));
        }
        if matches!(self.config.token, TokenConfig::Simple) && linearizable_revision(backend).await.is_ok() {
            if let Some(info) = self.lookup(backend, &backend.auth(), token) {
                return Ok(Some(info));
            }
        }
        Err(auth_status(AuthError::InvalidAuthToken))
    }
}

/// The identity of a request's sender (see [`Authenticator::caller`]).
pub type Caller = Result<Option<AuthInfo>, Status>;

/// One request's context: the backend, the member's authenticator and
/// limiter, the client's address and the resolved caller.
pub struct Cx {
    /// The member.
    pub backend: Rc<dyn Backend>,
    /// Its authenticator.
    pub auth: Rc<Authenticator>,
    /// Its limits.
    pub limits: Rc<Limiter>,
    /// The client's address, when known.
    pub source: Option<IpAddr>,
    token: Option<String>,
    caller: RefCell<Caller>,
    /// Where audit events go (none: not audited).
    audit: Option<Rc<dyn AuditSink>>,
    /// The client's address, for audit records (`local` if unknown).
    audit_source: Rc<str>,
    /// The request's method (gRPC path or gateway URL), for audit records.
    method: Rc<str>,
}

impl Cx {
    /// The context of a request from `source` with these headers.
    pub async fn new(
        backend: Rc<dyn Backend>,
        auth: Rc<Authenticator>,
        limits: Rc<Limiter>,
        source: Option<IpAddr>,
        headers: &http::HeaderMap,
    ) -> Cx {
        let token = Authenticator::token_of(headers);
        let caller = auth.caller(&*backend, token.as_deref()).await;
        Cx {
            backend,
            auth,
            limits,
            source,
            token,
            caller: RefCell::new(caller),
            audit: None,
            audit_source: Rc::from("local"),
            method: Rc::from(""),
        }
    }

    /// The same context, reporting to `audit` that `method` was called from
    /// `source`.
    pub fn with_audit(mut self, audit: Option<Rc<dyn AuditSink>>, source: &str, method: &str) -> Cx {
        self.audit = audit;
        self.audit_source = Rc::from(source);
        self.method = Rc::from(method);
        self
    }

    /// The caller's name for audit records: the authenticated user, or
    /// `anonymous`.
    fn audit_user(&self) -> String {
        match self.info() {
            Ok(Some(info)) => info.user,
            _ => "anonymous".to_string(),
        }
    }

    /// Records a refusal of `request` in the audit log: as the request's own
    /// event with outcome `denied` if it is audited, else as
    /// `permission_denied`.
    fn audit_refusal<Req: Audited>(&self, request: &Req, refused: &Status) {
        let Some(sink) = &self.audit else { return };
        let (event, mut detail) = request.audit().unwrap_or(("permission_denied", json!({})));
        if let Some(object) = detail.as_object_mut() {
            object.insert("method".into(), Value::from(&*self.method));
            object.insert("reason".into(), Value::from(refused.message()));
        }
        let user = request.audit_user().map_or_else(|| self.audit_user(), str::to_string);
        sink.record(AuditEvent {
            event,
            user,
            source: self.audit_source.to_string(),
            outcome: Outcome::Denied,
            detail,
        });
    }

    /// Records how an audited request ended.
    fn audit_outcome<Resp>(&self, audit: Option<(&'static str, Value)>, user: String, result: &Result<Resp, Status>) {
        let (Some(sink), Some((event, mut detail))) = (&self.audit, audit) else { return };
        let outcome = match result {
            Ok(_) => Outcome::Ok,
            Err(status) => {
                if let Some(object) = detail.as_object_mut() {
                    object.insert("reason".into(), Value::from(status.message()));
                }
                Outcome::of_status(status)
            }
        };
        sink.record(AuditEvent { event, user, source: self.audit_source.to_string(), outcome, detail });
    }

    /// The authenticated user sending the request, if any.
    pub fn user(&self) -> Option<String> {
        self.caller.borrow().as_ref().ok().and_then(|info| info.as_ref()).map(|info| info.user.clone())
    }

    fn info(&self) -> Result<Option<AuthInfo>, Status> {
        self.caller.borrow().clone()
    }

    /// The backend the handler of this request uses: one whose writes carry
    /// the sender ([`KvCommand::AsUser`]; no user without a token) so that
    /// the state machine checks them again when applying, as etcd does: a
    /// write is never applied past an auth change committed before it, even
    /// one this member had not applied when the write arrived.
    pub fn sender_backend(&self) -> Rc<dyn Backend> {
        let (user, auth_revision) = match self.info() {
            Ok(Some(info)) => (info.user, info.revision),
            _ => (String::new(), 0),
        };
        Rc::new(AsSender { inner: self.backend.clone(), user, auth_revision })
    }

    /// The same context over [`Cx::sender_backend`].
    fn for_handler(&self) -> Rc<Cx> {
        Rc::new(Cx {
            backend: self.sender_backend(),
            auth: self.auth.clone(),
            limits: self.limits.clone(),
            source: self.source,
            token: self.token.clone(),
            caller: RefCell::new(self.caller.borrow().clone()),
            audit: self.audit.clone(),
            audit_source: self.audit_source.clone(),
            method: self.method.clone(),
        })
    }

    /// Before a refusal stands: catches this member up with the leader (a
    /// linearizable barrier) and resolves the caller again, so that a request
    /// is not refused for an auth change (`auth disable`, a new grant) that
    /// was committed before it arrived but not applied here yet. False if the
    /// barrier failed.
    pub async fn catch_up(&self) -> bool {
        if linearizable_revision(&*self.backend).await.is_err() {
            return false;
        }
        let caller = self.auth.caller(&*self.backend, self.token.as_deref()).await;
        *self.caller.borrow_mut() = caller;
        true
    }

    /// Checks an operation of type `wanted` on `[key, range_end)`.
    pub fn check_op(&self, key: &[u8], range_end: &[u8], wanted: PermType) -> Result<(), Status> {
        let store = self.backend.auth();
        if !store.enabled() {
            return Ok(());
        }
        store.check_op(self.info()?.as_ref(), key, range_end, wanted).map_err(auth_status)
    }

    /// Checks that the caller holds the root role.
    pub fn check_admin(&self) -> Result<(), Status> {
        let store = self.backend.auth();
        if !store.enabled() {
            return Ok(());
        }
        store.check_admin(self.info()?.as_ref()).map_err(auth_status)
    }

    /// The keys attached to `lease` (none if it does not exist).
    async fn lease_keys(&self, lease: i64) -> Result<Vec<Vec<u8>>, Status> {
        let query = KvQuery::LeaseTimeToLive(kv::LeaseTimeToLiveRequest { id: lease, keys: true });
        match self.backend.read(query, false).await {
            Ok(Ok(KvResponse::LeaseTimeToLive(r))) => Ok(r.keys),
            Ok(Ok(_)) | Ok(Err(_)) => Ok(Vec::new()),
            Err(e) => Err(crate::status::backend_error(&e)),
        }
    }

    /// etcd's `checkLeasePuts`: the caller may write every key attached to
    /// `lease` (else it could revoke, or extend, keys it cannot write).
    async fn check_lease_puts(&self, lease: i64) -> Result<(), Status> {
        if lease == 0 || !self.backend.auth().enabled() {
            return Ok(());
        }
        self.info()?;
        for key in self.lease_keys(lease).await? {
            self.check_op(&key, &[], PermType::Write)?;
        }
        Ok(())
    }
}

/// What a request needs to be allowed (see the module doc).
pub(crate) trait Authorize {
    /// Ok if the caller of `cx` may send this request.
    async fn authorize(&self, cx: &Cx) -> Result<(), Status>;

    /// Ok if the request is within the member's size and count limits
    /// ([`crate::limits`]); checked after [`Authorize::authorize`].
    async fn within_limits(&self, _cx: &Cx) -> Result<(), Status> {
        Ok(())
    }
}

/// Requests only the root role may send.
macro_rules! admin_only {
    ($($t:ty),* $(,)?) => {$(
        impl Authorize for $t {
            async fn authorize(&self, cx: &Cx) -> Result<(), Status> {
                cx.check_admin()
            }
        }
    )*};
}

/// Requests anybody may send, as in etcd.
macro_rules! open_to_all {
    ($($t:ty),* $(,)?) => {$(
        impl Authorize for $t {
            async fn authorize(&self, _: &Cx) -> Result<(), Status> {
                Ok(())
            }
        }
    )*};
}

admin_only!(
    pb::CompactionRequest,
    pb::AlarmRequest,
    pb::DefragmentRequest,
    pb::SnapshotRequest,
    pb::HashRequest,
    pb::HashKvRequest,
    pb::MoveLeaderRequest,
    pb::MemberAddRequest,
    pb::MemberRemoveRequest,
    pb::MemberUpdateRequest,
    pb::MemberPromoteRequest,
    pb::AuthDisableRequest,
    pb::AuthUserAddRequest,
    pb::AuthUserGetRequest,
    pb::AuthUserListRequest,
    pb::AuthUserDeleteRequest,
    pb::AuthUserChangePasswordRequest,
    pb::AuthUserGrantRoleRequest,
    pb::AuthUserRevokeRoleRequest,
    pb::AuthRoleAddRequest,
    pb::AuthRoleGetRequest,
    pb::AuthRoleListRequest,
    pb::AuthRoleDeleteRequest,
    pb::AuthRoleGrantPermissionRequest,
    pb::AuthRoleRevokePermissionRequest,
);

open_to_all!(
    pb::LeaseKeepAliveRequest,
    pb::LeaseLeasesRequest,
    pb::StatusRequest,
    pb::MemberListRequest,
    pb::AuthEnableRequest,
    pb::AuthStatusRequest,
    pb::AuthenticateRequest,
);

impl Authorize for pb::LeaseGrantRequest {
    async fn authorize(&self, _: &Cx) -> Result<(), Status> {
        Ok(())
    }

    /// `limits.max_leases`, against the leases this member knows (grants in
    /// flight elsewhere may overshoot it by their number).
    async fn within_limits(&self, cx: &Cx) -> Result<(), Status> {
        if !cx.limits.limits_leases() {
            return Ok(());
        }
        match cx.backend.read(KvQuery::LeaseLeases, false).await {
            Ok(Ok(KvResponse::LeaseLeases(r))) => cx.limits.check_leases(r.leases.len()),
            Ok(Ok(_)) => Err(Status::internal("lockstep: backend answered a lease listing with something else")),
            Ok(Err(e)) => Err(kv_error(&e)),
            Err(e) => Err(crate::status::backend_error(&e)),
        }
    }
}

impl Authorize for pb::RangeRequest {
    async fn authorize(&self, cx: &Cx) -> Result<(), Status> {
        cx.check_op(&self.key, &self.range_end, PermType::Read)
    }
}

impl Authorize for pb::PutRequest {
    async fn authorize(&self, cx: &Cx) -> Result<(), Status> {
        cx.check_op(&self.key, &[], PermType::Write)?;
        cx.check_lease_puts(self.lease).await?;
        if self.prev_kv {
            cx.check_op(&self.key, &[], PermType::Read)?;
        }
        Ok(())
    }

    async fn within_limits(&self, cx: &Cx) -> Result<(), Status> {
        cx.limits.check_put(self.key.len(), self.value.len())
    }
}

impl Authorize for pb::DeleteRangeRequest {
    async fn authorize(&self, cx: &Cx) -> Result<(), Status> {
        cx.check_op(&self.key, &self.range_end, PermType::Write)?;
        if self.prev_kv {
            cx.check_op(&self.key, &self.range_end, PermType::Read)?;
        }
        Ok(())
    }
}

impl Authorize for pb::TxnRequest {
    /// etcd's `checkTxnReqsPermission`: read on every compare, and every op of
    /// both branches, at every depth; lease puts as for a put.
    async fn authorize(&self, cx: &Cx) -> Result<(), Status> {
        let mut pending: Vec<&pb::TxnRequest> = vec![self];
        let mut leases = Vec::new();
        while let Some(txn) = pending.pop() {
            for compare in &txn.compare {
                cx.check_op(&compare.key, &compare.range_end, PermType::Read)?;
            }
            for op in txn.success.iter().chain(&txn.failure) {
                use pb::request_op::Request;
                match &op.request {
                    Some(Request::RequestRange(r)) => cx.check_op(&r.key, &r.range_end, PermType::Read)?,
                    Some(Request::RequestPut(p)) => {
                        cx.check_op(&p.key, &[], PermType::Write)?;
                        if p.prev_kv {
                            cx.check_op(&p.key, &[], PermType::Read)?;
                        }
                        leases.push(p.lease);
                    }
                    Some(Request::RequestDeleteRange(d)) => {
                        cx.check_op(&d.key, &d.range_end, PermType::Write)?;
                        if d.prev_kv {
                            cx.check_op(&d.key, &d.range_end, PermType::Read)?;
                        }
                    }
                    Some(Request::RequestTxn(t)) => pending.push(t),
                    None => {}
                }
            }
        }
        leases.sort_unstable();
        leases.dedup();
        for lease in leases {
            cx.check_lease_puts(lease).await?;
        }
        Ok(())
    }

    /// The sizes of every put, at every depth.
    async fn within_limits(&self, cx: &Cx) -> Result<(), Status> {
        let mut pending: Vec<&pb::TxnRequest> = vec![self];
        while let Some(txn) = pending.pop() {
            for op in txn.success.iter().chain(&txn.failure) {
                use pb::request_op::Request;
                match &op.request {
                    Some(Request::RequestPut(p)) => cx.limits.check_put(p.key.len(), p.value.len())?,
                    Some(Request::RequestTxn(t)) => pending.push(t),
                    _ => {}
                }
            }
        }
        Ok(())
    }
}

impl Authorize for pb::LeaseRevokeRequest {
    async fn authorize(&self, cx: &Cx) -> Result<(), Status> {
        if cx.backend.auth().enabled() {
            cx.info()?.ok_or_else(|| auth_status(AuthError::UserEmpty))?;
        }
        cx.check_lease_puts(self.id).await
    }
}

impl Authorize for pb::LeaseTimeToLiveRequest {
    /// etcd's `checkLeaseTimeToLive`: read on every attached key.
    async fn authorize(&self, cx: &Cx) -> Result<(), Status> {
        if !cx.backend.auth().enabled() {
            return Ok(());
        }
        cx.info()?.ok_or_else(|| auth_status(AuthError::UserEmpty))?;
        for key in cx.lease_keys(self.id).await? {
            cx.check_op(&key, &[], PermType::Read)?;
        }
        Ok(())
    }
}

impl Authorize for pb::WatchCreateRequest {
    async fn authorize(&self, cx: &Cx) -> Result<(), Status> {
        let key: &[u8] = if self.key.is_empty() { &[0] } else { &self.key };
        cx.check_op(key, &self.range_end, PermType::Read)
    }
}

/// Runs `handler` on `request` if the caller of `cx` may send it; a refusal,
/// and the outcome of an [`Audited`] request, go to the audit log.
pub(crate) async fn checked<Req, Resp, F, Fut>(cx: Rc<Cx>, request: Req, handler: F) -> Result<Resp, Status>
where
    Req: Authorize + Audited,
    F: FnOnce(Rc<dyn Backend>, Req) -> Fut,
    Fut: std::future::Future<Output = Result<Resp, Status>>,
{
    authorize(&cx, &request).await?;
    request.within_limits(&cx).await?;
    let (audit, user) = audit_of(&cx, &request);
    let result = handler(cx.sender_backend(), request).await;
    cx.audit_outcome(audit, user, &result);
    result
}

/// What the audit log will say about `request` once it is answered.
fn audit_of<Req: Audited>(cx: &Cx, request: &Req) -> (Option<(&'static str, Value)>, String) {
    if cx.audit.is_none() {
        return (None, String::new());
    }
    let user = request.audit_user().map_or_else(|| cx.audit_user(), str::to_string);
    (request.audit(), user)
}

/// `request.authorize`, with a refusal confirmed after [`Cx::catch_up`]; a
/// refusal that stands is audited.
async fn authorize<Req: Authorize + Audited>(cx: &Cx, request: &Req) -> Result<(), Status> {
    let outcome = match request.authorize(cx).await {
        Err(refused) if cx.catch_up().await => request.authorize(cx).await.map_err(|_| refused),
        outcome => outcome,
    };
    if let Err(refused) = &outcome {
        cx.audit_refusal(request, refused);
    }
    outcome
}

/// The same for the auth RPCs, whose handlers need the context.
pub(crate) async fn checked_auth<Req, Resp, F, Fut>(cx: Rc<Cx>, request: Req, handler: F) -> Result<Resp, Status>
where
    Req: Authorize + Audited,
    F: FnOnce(Rc<Cx>, Req) -> Fut,
    Fut: std::future::Future<Output = Result<Resp, Status>>,
{
    authorize(&cx, &request).await?;
    request.within_limits(&cx).await?;
    let (audit, user) = audit_of(&cx, &request);
    let result = handler(cx.for_handler(), request).await;
    cx.audit_outcome(audit, user, &result);
    result
}

/// A backend whose writes carry their sender (see [`Cx::sender_backend`]).
struct AsSender {
    inner: Rc<dyn Backend>,
    user: String,
    auth_revision: u64,
}

#[async_trait::async_trait(?Send)]
impl Backend for AsSender {
    fn header(&self) -> crate::backend::HeaderInfo {
        self.inner.header()
    }

    async fn write(&self, command: KvCommand) -> Result<kv::KvResult, crate::backend::BackendError> {
        let command = match command {
            wrapped @ KvCommand::AsUser(_) => wrapped,
            command => KvCommand::AsUser(kv::UserCommand {
                user: self.user.clone(),
                auth_revision: self.auth_revision,
                command: Box::new(command),
            }),
        };
        self.inner.write(command).await
    }

    async fn read(&self, query: KvQuery, linearizable: bool) -> Result<kv::KvResult, crate::backend::BackendError> {
        self.inner.read(query, linearizable).await
    }

    async fn leader_request(&self, query: KvQuery) -> Result<kv::KvResult, crate::backend::BackendError> {
        self.inner.leader_request(query).await
    }

    fn watch_create(&self, request: kv::WatchCreateRequest) -> Result<kv::WatchId, kv::WatchResponse> {
        self.inner.watch_create(request)
    }

    fn watch_cancel(&self, id: kv::WatchId) -> Option<kv::WatchResponse> {
        self.inner.watch_cancel(id)
    }

    fn watch_progress(&self, all: bool) {
        self.inner.watch_progress(all);
    }

    fn watch_take(&self, id: kv::WatchId) -> Option<kv::WatchResponse> {
        self.inner.watch_take(id)
    }

    async fn watch_changed(&self) {
        self.inner.watch_changed().await;
    }

    fn auth(&self) -> Arc<AuthStore> {
        self.inner.auth()
    }

    fn take_auth_events(&self) -> Vec<AuthEvent> {
        self.inner.take_auth_events()
    }

    async fn offload(&self, job: Box<dyn FnOnce() + Send>) {
        self.inner.offload(job).await;
    }

    async fn status(&self) -> Result<crate::backend::MemberStatus, crate::backend::BackendError> {
        self.inner.status().await
    }

    async fn members(
        &self,
        linearizable: bool,
    ) -> Result<Vec<crate::backend::MemberInfo>, crate::backend::BackendError> {
        self.inner.members(linearizable).await
    }

    async fn member_add(
        &self,
        peer_urls: Vec<String>,
        is_learner: bool,
    ) -> Result<(crate::backend::MemberInfo, Vec<crate::backend::MemberInfo>), crate::backend::BackendError> {
        self.inner.member_add(peer_urls, is_learner).await
    }

    async fn member_remove(&self, id: u64) -> Result<Vec<crate::backend::MemberInfo>, crate::backend::BackendError> {
        self.inner.member_remove(id).await
    }

    async fn member_update(
        &self,
        id: u64,
        peer_urls: Vec<String>,
    ) -> Result<Vec<crate::backend::MemberInfo>, crate::backend::BackendError> {
        self.inner.member_update(id, peer_urls).await
    }

    async fn member_promote(&self, id: u64) -> Result<Vec<crate::backend::MemberInfo>, crate::backend::BackendError> {
        self.inner.member_promote(id).await
    }

    async fn snapshot(&self) -> Result<Vec<u8>, crate::backend::BackendError> {
        self.inner.snapshot().await
    }

    async fn hash(&self) -> Result<u32, crate::backend::BackendError> {
        self.inner.hash().await
    }

    async fn hash_kv(&self, revision: i64) -> Result<crate::backend::KvHash, crate::backend::BackendError> {
        self.inner.hash_kv(revision).await
    }

    async fn move_leader(&self, target: u64) -> Result<(), crate::backend::BackendError> {
        self.inner.move_leader(target).await
    }
}

// ---- the Auth service ----

/// The revision after a linearizable barrier: the member's state (auth
/// included) is then at least as new as anything acknowledged before.
async fn linearizable_revision(backend: &dyn Backend) -> Result<kv::Revision, Status> {
    let probe = kv::RangeRequest { key: vec![0], count_only: true, ..kv::RangeRequest::default() };
    match backend.read(KvQuery::Range(probe), true).await {
        Ok(Ok(KvResponse::Range(r))) => Ok(r.header.revision),
        Ok(Ok(_)) => Err(Status::internal("lockstep: backend answered a range with something else")),
        Ok(Err(e)) => Err(kv_error(&e)),
        Err(e) => Err(crate::status::backend_error(&e)),
    }
}

fn header(backend: &dyn Backend, revision: kv::Revision) -> Option<pb::ResponseHeader> {
    crate::convert::header(backend.header(), kv::ResponseHeader { revision })
}

/// Proposes an auth command; its response header.
///
/// A write sent to a follower is answered once the leader applied it; before
/// answering, this member also catches up (a linearizable barrier), so that
/// the change is in force here when the client hears of it: a read sent to
/// the same member right after `auth enable` is checked, and a token just
/// issued is known, as with etcd, whose members answer after their own apply.
async fn propose(backend: &dyn Backend, command: AuthCommand) -> Result<(Option<pb::ResponseHeader>, String), Status> {
    let answer = match backend.write(KvCommand::Auth(command)).await {
        Err(e) => Err(crate::status::backend_error(&e)),
        Ok(Err(e)) => Err(kv_error(&e)),
        Ok(Ok(KvResponse::Auth(r))) => Ok((header(backend, r.header.revision), r.token)),
        Ok(Ok(_)) => Err(Status::internal("lockstep: backend answered an auth command with something else")),
    };
    if answer.is_ok() {
        // The change is committed either way; a failed barrier (no leader
        // for a moment) only leaves this member to catch up on its own.
        let _ = linearizable_revision(backend).await;
    }
    answer
}

/// Runs `job` through [`Backend::offload`] and returns its result.
async fn offloaded<T: Send + 'static>(backend: &dyn Backend, job: impl FnOnce() -> T + Send + 'static) -> T {
    let slot = Arc::new(std::sync::Mutex::new(None));
    let out = Arc::clone(&slot);
    backend
        .offload(Box::new(move || {
            let value = job();
            *out.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(value);
        }))
        .await;
    let value = slot.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take();
    value.expect("Backend::offload ran the job")
}

async fn hash_password(cx: &Cx, password: String) -> Result<Vec<u8>, Status> {
    let cost = cx.auth.config.bcrypt_cost;
    offloaded(&*cx.backend, move || bcrypt::hash(password, cost))
        .await
        .map(String::into_bytes)
        .map_err(|e| Status::internal(format!("lockstep: hashing the password failed: {e}")))
}

/// 16 random letters (etcd's simple-token prefix).
fn token_prefix() -> Result<String, Status> {
    const LETTERS: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
    let mut bytes = [0u8; SIMPLE_TOKEN_LETTERS];
    getrandom::fill(&mut bytes).map_err(|e| Status::internal(format!("lockstep: no randomness: {e}")))?;
    Ok(bytes.iter().map(|b| LETTERS[usize::from(*b) % LETTERS.len()] as char).collect())
}

pub(crate) async fn auth_enable(cx: Rc<Cx>, _: pb::AuthEnableRequest) -> Result<pb::AuthEnableResponse, Status> {
    let (header, _) = propose(&*cx.backend, AuthCommand::Enable).await?;
    Ok(pb::AuthEnableResponse { header })
}

pub(crate) async fn auth_disable(cx: Rc<Cx>, _: pb::AuthDisableRequest) -> Result<pb::AuthDisableResponse, Status> {
    let (header, _) = propose(&*cx.backend, AuthCommand::Disable).await?;
    Ok(pb::AuthDisableResponse { header })
}

pub(crate) async fn auth_status_rpc(cx: Rc<Cx>, _: pb::AuthStatusRequest) -> Result<pb::AuthStatusResponse, Status> {
    let revision = linearizable_revision(&*cx.backend).await?;
    let store = cx.backend.auth();
    Ok(pb::AuthStatusResponse {
        header: header(&*cx.backend, revision),
        enabled: store.enabled(),
        auth_revision: store.revision(),
    })
}

/// etcd's `Authenticate`: check the password against the linearizably read
/// store (off the executor), then issue a token; retried if the store
/// changed meanwhile. A user name or source address locked out after failed
/// attempts is refused before anything else, bcrypt included (see
/// [`Limiter::auth_admit`]); failures are counted towards lock-outs, and a
/// success clears the user's count.
pub(crate) async fn authenticate(cx: Rc<Cx>, r: pb::AuthenticateRequest) -> Result<pb::AuthenticateResponse, Status> {
    let backend = &*cx.backend;
    cx.limits.auth_admit(&r.name, cx.source)?;
    for _ in 0..AUTHENTICATE_ATTEMPTS_MAX {
        let revision = linearizable_revision(backend).await?;
        let store = backend.auth();
        if !store.enabled() {
            return Err(auth_status(AuthError::AuthNotEnabled));
        }
        let Some(user) = store.user(&r.name).filter(|u| !u.no_password) else {
            cx.limits.auth_failed(&r.name, cx.source, false);
            return Err(auth_status(AuthError::AuthFailed));
        };
        let (hash, password) = (user.password_hash.clone(), r.password.clone());
        let matches = offloaded(backend, move || {
            std::str::from_utf8(&hash).ok().is_some_and(|hash| bcrypt::verify(password, hash).unwrap_or(false))
        })
        .await;
        if !matches {
            cx.limits.auth_failed(&r.name, cx.source, true);
            return Err(auth_status(AuthError::AuthFailed));
        }
        cx.limits.auth_succeeded(&r.name);
        let checked_revision = store.revision();
        match &cx.auth.config.token {
            TokenConfig::Simple => {
                let command =
                    AuthCommand::Authenticate { name: r.name.clone(), token_prefix: token_prefix()?, checked_revision };
                match propose(backend, command).await {
                    Ok((header, token)) => {
                        cx.auth.absorb(backend);
                        return Ok(pb::AuthenticateResponse { header, token });
                    }
                    Err(status) if status.message() == AuthError::AuthOldRevision.to_string() => continue,
                    Err(status) => return Err(status),
                }
            }
            TokenConfig::Jwt(jwt) => {
                let token = jwt.sign(&r.name, checked_revision, SystemTime::now()).map_err(Status::internal)?;
                return Ok(pb::AuthenticateResponse { header: header(backend, revision), token });
            }
        }
    }
    Err(auth_status(AuthError::AuthOldRevision))
}

pub(crate) async fn user_add(cx: Rc<Cx>, r: pb::AuthUserAddRequest) -> Result<pb::AuthUserAddResponse, Status> {
    if r.name.is_empty() {
        return Err(auth_status(AuthError::UserEmpty));
    }
    let no_password = r.options.is_some_and(|o| o.no_password);
    let password_hash = if no_password {
        Vec::new()
    } else if !r.hashed_password.is_empty() {
        // A client that hashed itself (etcd's hashedPassword is base64 of the hash).
        base64_decode(&r.hashed_password)?
    } else {
        hash_password(&cx, r.password).await?
    };
    let (header, _) = propose(&*cx.backend, AuthCommand::UserAdd { name: r.name, password_hash, no_password }).await?;
    Ok(pb::AuthUserAddResponse { header })
}

fn base64_decode(text: &str) -> Result<Vec<u8>, Status> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .map_err(|_| Status::invalid_argument("lockstep: hashedPassword is not base64"))
}

pub(crate) async fn user_get(cx: Rc<Cx>, r: pb::AuthUserGetRequest) -> Result<pb::AuthUserGetResponse, Status> {
    let revision = linearizable_revision(&*cx.backend).await?;
    let store = cx.backend.auth();
    let user = store.user(&r.name).ok_or(auth_status(AuthError::UserNotFound))?;
    Ok(pb::AuthUserGetResponse { header: header(&*cx.backend, revision), roles: user.roles.clone() })
}

pub(crate) async fn user_list(cx: Rc<Cx>, _: pb::AuthUserListRequest) -> Result<pb::AuthUserListResponse, Status> {
    let revision = linearizable_revision(&*cx.backend).await?;
    Ok(pb::AuthUserListResponse { header: header(&*cx.backend, revision), users: cx.backend.auth().user_names() })
}

pub(crate) async fn user_delete(
    cx: Rc<Cx>,
    r: pb::AuthUserDeleteRequest,
) -> Result<pb::AuthUserDeleteResponse, Status> {
    let (header, _) = propose(&*cx.backend, AuthCommand::UserDelete { name: r.name }).await?;
    Ok(pb::AuthUserDeleteResponse { header })
}

pub(crate) async fn user_change_password(
    cx: Rc<Cx>,
    r: pb::AuthUserChangePasswordRequest,
) -> Result<pb::AuthUserChangePasswordResponse, Status> {
    // Refuse an unknown user before paying for a hash.
    if cx.backend.auth().user(&r.name).is_none() {
        linearizable_revision(&*cx.backend).await?;
        if cx.backend.auth().user(&r.name).is_none() {
            return Err(auth_status(AuthError::UserNotFound));
        }
    }
    let password_hash = if r.hashed_password.is_empty() {
        hash_password(&cx, r.password).await?
    } else {
        base64_decode(&r.hashed_password)?
    };
    let (header, _) = propose(&*cx.backend, AuthCommand::UserChangePassword { name: r.name, password_hash }).await?;
    Ok(pb::AuthUserChangePasswordResponse { header })
}

pub(crate) async fn user_grant_role(
    cx: Rc<Cx>,
    r: pb::AuthUserGrantRoleRequest,
) -> Result<pb::AuthUserGrantRoleResponse, Status> {
    let (header, _) = propose(&*cx.backend, AuthCommand::UserGrantRole { user: r.user, role: r.role }).await?;
    Ok(pb::AuthUserGrantRoleResponse { header })
}

pub(crate) async fn user_revoke_role(
    cx: Rc<Cx>,
    r: pb::AuthUserRevokeRoleRequest,
) -> Result<pb::AuthUserRevokeRoleResponse, Status> {
    let (header, _) = propose(&*cx.backend, AuthCommand::UserRevokeRole { name: r.name, role: r.role }).await?;
    Ok(pb::AuthUserRevokeRoleResponse { header })
}

pub(crate) async fn role_add(cx: Rc<Cx>, r: pb::AuthRoleAddRequest) -> Result<pb::AuthRoleAddResponse, Status> {
    let (header, _) = propose(&*cx.backend, AuthCommand::RoleAdd { name: r.name }).await?;
    Ok(pb::AuthRoleAddResponse { header })
}

fn perm_type_pb(t: PermType) -> i32 {
    match t {
        PermType::Read => authpb::permission::Type::Read as i32,
        PermType::Write => authpb::permission::Type::Write as i32,
        PermType::ReadWrite => authpb::permission::Type::Readwrite as i32,
    }
}

pub(crate) async fn role_get(cx: Rc<Cx>, r: pb::AuthRoleGetRequest) -> Result<pb::AuthRoleGetResponse, Status> {
    let revision = linearizable_revision(&*cx.backend).await?;
    let perms = cx.backend.auth().role_permissions(&r.role).map_err(auth_status)?;
    Ok(pb::AuthRoleGetResponse {
        header: header(&*cx.backend, revision),
        perm: perms
            .into_iter()
            .map(|p| authpb::Permission { perm_type: perm_type_pb(p.perm_type), key: p.key, range_end: p.range_end })
            .collect(),
    })
}

pub(crate) async fn role_list(cx: Rc<Cx>, _: pb::AuthRoleListRequest) -> Result<pb::AuthRoleListResponse, Status> {
    let revision = linearizable_revision(&*cx.backend).await?;
    Ok(pb::AuthRoleListResponse { header: header(&*cx.backend, revision), roles: cx.backend.auth().role_names() })
}

pub(crate) async fn role_delete(
    cx: Rc<Cx>,
    r: pb::AuthRoleDeleteRequest,
) -> Result<pb::AuthRoleDeleteResponse, Status> {
    let (header, _) = propose(&*cx.backend, AuthCommand::RoleDelete { name: r.role }).await?;
    Ok(pb::AuthRoleDeleteResponse { header })
}

pub(crate) async fn role_grant_permission(
    cx: Rc<Cx>,
    r: pb::AuthRoleGrantPermissionRequest,
) -> Result<pb::AuthRoleGrantPermissionResponse, Status> {
    let perm = r.perm.ok_or(auth_status(AuthError::PermissionNotGiven))?;
    let perm_type = match authpb::permission::Type::try_from(perm.perm_type) {
        Ok(authpb::permission::Type::Read) => PermType::Read,
        Ok(authpb::permission::Type::Write) => PermType::Write,
        Ok(authpb::permission::Type::Readwrite) => PermType::ReadWrite,
        Err(_) => {
            return Err(Status::invalid_argument(format!("lockstep: unknown permission type {}", perm.perm_type)))
        }
    };
    let perm = kv::Permission { perm_type, key: perm.key, range_end: perm.range_end };
    let (header, _) = propose(&*cx.backend, AuthCommand::RoleGrantPermission { name: r.name, perm }).await?;
    Ok(pb::AuthRoleGrantPermissionResponse { header })
}

pub(crate) async fn role_revoke_permission(
    cx: Rc<Cx>,
    r: pb::AuthRoleRevokePermissionRequest,
) -> Result<pb::AuthRoleRevokePermissionResponse, Status> {
    let command = AuthCommand::RoleRevokePermission { name: r.role, key: r.key, range_end: r.range_end };
    let (header, _) = propose(&*cx.backend, command).await?;
    Ok(pb::AuthRoleRevokePermissionResponse { header })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_options_parse_like_etcds() {
        let no_files = |path: &str| Err(format!("no file {path}"));
        assert!(matches!(TokenConfig::parse("simple", no_files), Ok(TokenConfig::Simple)));
        assert!(TokenConfig::parse("simple,ttl=5m", no_files).is_err());
        assert!(TokenConfig::parse("opaque", no_files).is_err());
        assert!(TokenConfig::parse("jwt,priv-key=k", no_files).is_err(), "sign-method is required");
        assert!(TokenConfig::parse("jwt,sign-method=XX1,priv-key=k", no_files).is_err());
        assert!(TokenConfig::parse("jwt,sign-method=HS256,priv-key=k,priv-key=l", no_files).is_err());
        let secret = |_: &str| Ok(b"0123456789abcdef".to_vec());
        let Ok(TokenConfig::Jwt(jwt)) = TokenConfig::parse("jwt,sign-method=HS256,priv-key=k,ttl=1h30m", secret) else {
            panic!("an HMAC jwt parses")
        };
        assert_eq!(jwt.ttl, Duration::from_secs(5400));
        let now = SystemTime::now();
        let token = jwt.sign("alice", 7, now).expect("sign");
        assert_eq!(jwt.verify(&token, now), Some(AuthInfo { user: "alice".into(), revision: 7 }));
        assert_eq!(jwt.verify(&token, now + Duration::from_secs(5401)), None, "expired");
        let mut forged = token.clone();
        forged.pop();
        assert_eq!(jwt.verify(&forged, now), None);
        let other = |_: &str| Ok(b"another secret!!".to_vec());
        let Ok(TokenConfig::Jwt(other)) = TokenConfig::parse("jwt,sign-method=HS256,priv-key=k", other) else {
            panic!("parses")
        };
        assert_eq!(other.verify(&token, now), None, "signed with another key");
    }

    #[test]
    fn go_durations() {
        assert_eq!(parse_go_duration("300s"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_go_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_go_duration("1h2m3s"), Ok(Duration::from_secs(3723)));
        assert_eq!(parse_go_duration("1500ms"), Ok(Duration::from_millis(1500)));
        assert!(parse_go_duration("").is_err());
        assert!(parse_go_duration("5").is_err());
        assert!(parse_go_duration("5d").is_err());
    }
}
