//! Where the directory reports provisioning events besides the audit trail (metrics, StatsD).

/// Outcome of provisioning one role request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RoleOutcome {
    /// A requested role matched the catalog and was granted.
    Matched,
    /// A requested role matched nothing (recorded in the audit trail).
    Unmatched,
    /// No requested role matched: the default role was granted.
    DefaultRole,
    /// Roles came from role mapping rules.
    Mapping,
    /// No explicit, mapped or default role applied: the roles a user had were revoked.
    Revoked,
}

impl RoleOutcome {
    /// Metric label value.
    pub fn as_str(self) -> &'static str {
        match self {
            RoleOutcome::Matched => "matched",
            RoleOutcome::Unmatched => "unmatched",
            RoleOutcome::DefaultRole => "default",
            RoleOutcome::Mapping => "mapping",
            RoleOutcome::Revoked => "revoked",
        }
    }
}

/// Receives provisioning events. Implementations must not block.
pub trait Observer: Send + Sync + 'static {
    /// `count` role requests had `outcome`.
    fn role_event(&self, outcome: RoleOutcome, count: u64);
}

/// Discards events.
#[derive(Debug, Default)]
pub struct NoopObserver;

impl Observer for NoopObserver {
    fn role_event(&self, _outcome: RoleOutcome, _count: u64) {}
}
