"""A group member's use of an earlier member's outputs: the one place of that rule.

A member may have a `name`; another member's params may then hold the reference
``{"$outputs": "<name>"}`` (at any depth), which stands for the list of paths the named
member's last COMPLETED run returned (its `artifacts`). The rule:

- at enqueue (`link`), a reference must name an EARLIER member of the same group; it is
  stored with that member's index, ``{"$outputs": "research", "member": 0}``, so the
  scheduler resolves it without the names, which are not stored;
- the job type's validator sees each reference as `placeholder` (a one-path list), so
  a param typed ``list[str]`` accepts it;
- at start (`resolve`, in the claim's transaction), each reference becomes the named
  member's outputs: the run's `params_snapshot` records them, the handler receives
  them (`at_start`, which also runs the validator again on the resolved params). A
  reference whose member has no completed run (it was cancelled alone) is left in
  place and fails the run with an error that says so.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from scheduler_core.errors import InvalidJobError, InvalidParamsError

if TYPE_CHECKING:
    from scheduler_core.registry import JobType
    from scheduler_core.values import Claim, Job

KEY = "$outputs"
MEMBER = "member"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
"""A member's name: a short slug, as it reads in a group file."""
FORM = '{"$outputs": "<name of an earlier member>"}'


@dataclass(frozen=True, slots=True)
class Reference:
    """One reference found in params: where (`path`, for messages), the member's name,
    and its index in the group once linked."""

    path: str
    label: str
    member: int | None


@dataclass(frozen=True, slots=True)
class Members:
    """What a member's references may name: the group's names (None once the group is
    written: a stored reference carries its member's index) and the member's own index."""

    names: Mapping[str, int] | None
    index: int


def placeholder(label: str) -> str:
    """The one path a validator sees for a reference at enqueue."""
    return f"<outputs of {label}>"


def check_name(value: object) -> str:
    """A member's name: 1-64 letters, digits or _ . -, starting with a letter or digit."""
    if not isinstance(value, str) or not _NAME.fullmatch(value):
        from scheduler_core.validation import shown

        raise InvalidJobError(
            f"name must be 1-64 letters, digits or _ . -, starting with a letter or digit "
            f"(e.g. research), got {shown(value)}"
        )
    return value


def names_of(jobs: Sequence[Any]) -> dict[str, int]:
    """Each named member's index; a bad or repeated name is refused (InvalidJobError
    with `.member`, as validation.member_error)."""
    from scheduler_core.validation import member_error

    names: dict[str, int] = {}
    for index, job in enumerate(jobs):
        if not isinstance(job, Mapping) or job.get("name") is None:
            continue
        try:
            label = check_name(job["name"])
            if label in names:
                raise InvalidJobError(
                    f"name {label!r} is taken by job #{names[label]}: give each member its own name"
                )
        except InvalidJobError as exc:
            raise member_error(exc, index) from None
        names[label] = index
    return names


def holds(params: dict[str, Any] | list[Any]) -> bool:
    """Does `params` (checked params: plain JSON, bounded depth) hold a mapping with the
    key "$outputs"? Runs on every enqueue: about 2 us for six keys (a generic walk: 25)."""
    if isinstance(params, dict):
        return KEY in params or any(holds(v) for v in params.values() if isinstance(v, dict | list))
    return any(holds(v) for v in params if isinstance(v, dict | list))


def _is_reference(value: object) -> bool:
    return isinstance(value, Mapping) and KEY in value


def _substitute(value: Any, path: str, swap: Callable[[Reference], Any]) -> Any:
    """`value` (checked params: bounded depth) with each reference replaced by `swap(it)`."""
    if _is_reference(value):
        return swap(_parse(value, path))
    if isinstance(value, Mapping):
        return {
            k: _substitute(v, f"{path}.{k}" if path else str(k), swap) for k, v in value.items()
        }
    if isinstance(value, list):
        return [_substitute(v, f"{path}[{i}]", swap) for i, v in enumerate(value)]
    return value


def _parse(value: Mapping[str, Any], path: str) -> Reference:
    from scheduler_core.validation import shown

    label, member = value.get(KEY), value.get(MEMBER)
    if (
        set(value) - {KEY, MEMBER}
        or not isinstance(label, str)
        or not _NAME.fullmatch(label)
        or (member is not None and (isinstance(member, bool) or not isinstance(member, int)))
    ):
        raise InvalidParamsError(
            f"params.{path} is a malformed reference to a member's outputs: write {FORM}, "
            f"got {shown(dict(value))}"
        )
    return Reference(path=path, label=label, member=member)


def find(params: Mapping[str, Any]) -> list[Reference]:
    """Every reference in `params` (checked params), in document order."""
    found: list[Reference] = []

    def note(ref: Reference) -> Any:
        found.append(ref)
        return None

    _substitute(params, "", note)
    return found


def link(params: dict[str, Any], members: Members | None) -> dict[str, Any]:
    """`params` with each reference stored with its member's index; refused
    (InvalidParamsError) unless it names an earlier member of the same group."""

    def linked(ref: Reference) -> dict[str, Any]:
        where = f"params.{ref.path} refers to the outputs of {ref.label!r}"
        if members is None:
            raise InvalidParamsError(
                f"{where}, but only a member of a job group may use another member's outputs: "
                "put both jobs in one create_job_group / group file"
            )
        target = ref.member
        if members.names is not None:
            known = members.names.get(ref.label)
            if known is None:
                listed = ", ".join(sorted(members.names)) or "none"
                raise InvalidParamsError(
                    f"{where}, but no member of the group has that name (names: {listed}); "
                    "give the producing member name: <label>"
                )
            if target is not None and target != known:
                raise InvalidParamsError(
                    f"{where} with member {target}, but {ref.label!r} is job #{known}: "
                    f"drop 'member' and write {FORM}"
                )
            target = known
        elif target is None:
            raise InvalidParamsError(
                f"{where} without its member's index: once a group is queued a reference "
                'reads {"$outputs": "<name>", "member": <index>}, as the job shows it'
            )
        if target == members.index:
            raise InvalidParamsError(
                f"{where}, this member itself: a member may use only the outputs of members "
                "before it"
            )
        if not 0 <= target < members.index:
            raise InvalidParamsError(
                f"{where}, which does not come before this member: a member may use only "
                "the outputs of members before it (reorder the jobs)"
            )
        return {KEY: ref.label, MEMBER: target}

    if _is_reference(params):
        raise InvalidParamsError(
            f"params are a reference as a whole; put it under a param's name, e.g. "
            f'{{"cards": {FORM}}}'
        )
    linked_params: dict[str, Any] = _substitute(params, "", linked)
    return linked_params


def with_placeholders(params: dict[str, Any]) -> dict[str, Any]:
    """The params a validator sees at enqueue: each reference as a one-path list."""
    shown: dict[str, Any] = _substitute(params, "", lambda ref: [placeholder(ref.label)])
    return shown


def wanted(params: dict[str, Any]) -> set[int]:
    """The indexes of the members whose outputs `params` (stored form) use."""
    if not holds(params):
        return set()
    return {ref.member for ref in find(params) if ref.member is not None}


def resolve(params: dict[str, Any], outputs: Mapping[int, list[str]]) -> dict[str, Any]:
    """`params` with each reference replaced by its member's outputs; a reference whose
    member is missing from `outputs` (no completed run) stays, for `at_start` to report."""

    def swap(ref: Reference) -> Any:
        if ref.member is not None and ref.member in outputs:
            return list(outputs[ref.member])
        return {KEY: ref.label, MEMBER: ref.member}

    resolved: dict[str, Any] = _substitute(params, "", swap)
    return resolved


def at_start(claim: Claim, job_type: JobType) -> tuple[Job, str | None]:
    """The job as its handler receives it (params: the run's snapshot, references
    resolved), or the reason it can not start: a member with no completed run, or
    resolved params that the type's validator refuses."""
    job, snapshot = claim.job, claim.run.params_snapshot
    if job.group_id is None and job.retry_of is None:  # only members hold references
        return job, None
    left = find(snapshot) if holds(snapshot) else []
    if left:
        ref = left[0]
        return job, (
            f"params.{ref.path} refers to the outputs of {ref.label!r} (job #{ref.member} of "
            "its group), which has no completed run: there is nothing to pass on (was it "
            "cancelled?)"
        )
    if snapshot == job.params:  # it held no reference
        return job, None
    if job_type.validate is not None:
        try:
            job_type.validate(dict(snapshot))
        except Exception as exc:
            return job, (
                f"params with the outputs of earlier members are invalid for job type "
                f"{job.job_type!r}: {type(exc).__name__}: {exc}"
            )
    return job.model_copy(update={"params": dict(snapshot)}), None
