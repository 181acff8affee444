"""What the administrator asks for when an identity has a result: the tables, rules, dry run.

Pure: an SpfOutcome and the configuration in, a Verdict out (DESIGN.md §3.4).
"""

from __future__ import annotations

from spfpolicy.config.settings import Config, RecipientRule
from spfpolicy.model import Identity, SpfOutcome, SpfResult, Verdict

# Verdicts that end the request at once: the first one wins, later identities are not looked
# at (a HELO fail may reject before MAIL FROM, RFC 7208 §2.3).
FINAL = frozenset({Verdict.REJECT, Verdict.DEFER})
# Verdicts that stop the mail flowing as usual; dry run makes each a warning.
ENFORCING = FINAL | {Verdict.HOLD}


def verdict_for(outcome: SpfOutcome, config: Config, rule: RecipientRule | None = None) -> Verdict:
    """The verdict for one identity's result: the tables, then [policy]'s rules, then dry run."""
    verdict, _ = judge(outcome, config, rule)
    return verdict


def judge(
    outcome: SpfOutcome, config: Config, rule: RecipientRule | None = None
) -> tuple[Verdict, Verdict | None]:
    """(verdict, what enforcement would have done when the verdict is only a warning)."""
    actions = rule.actions if rule is not None else config.actions
    table = actions.helo if outcome.identity is Identity.HELO else actions.mailfrom
    verdict = table.verdict(_effective_result(outcome, config))
    would_have = None
    if (
        verdict is Verdict.REJECT
        and config.policy.reject_only_no_mail
        and not outcome.publishes_no_mail
    ):
        verdict, would_have = Verdict.WARN, Verdict.REJECT
    if verdict in ENFORCING and (config.policy.dry_run or (rule is not None and rule.dry_run)):
        verdict, would_have = Verdict.WARN, verdict
    if verdict is Verdict.WARN and would_have is None:
        would_have = Verdict.DEFER if outcome.result is SpfResult.TEMPERROR else Verdict.REJECT
    return verdict, would_have


def _effective_result(outcome: SpfOutcome, config: Config) -> SpfResult:
    """The result the tables see: anything but pass is fail for reject_not_pass_domains."""
    if (
        outcome.result is not SpfResult.PASS
        and outcome.identity is Identity.MAILFROM
        and outcome.domain.lower().rstrip(".") in config.policy.reject_not_pass_domains
    ):
        return SpfResult.FAIL
    return outcome.result
