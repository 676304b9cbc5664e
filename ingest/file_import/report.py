"""What an import did: counts per section and every rejected record with its reason."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

SECTIONS = (
    "tariffs",
    "customers",
    "metering_points",
    "meters",
    "contracts",
    "readings",
    "payments",
)
OUTCOMES = ("created", "updated", "unchanged", "rejected")
_SHOWN = 20


@dataclass(frozen=True, slots=True)
class Rejection:
    section: str
    index: int
    key: str | None
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "section": self.section,
            "index": self.index,
            "key": self.key,
            "reason": self.reason,
        }


@dataclass
class SectionCounts:
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    rejected: int = 0

    @property
    def total(self) -> int:
        return self.created + self.updated + self.unchanged + self.rejected

    def to_dict(self) -> dict[str, int]:
        return {o: getattr(self, o) for o in OUTCOMES}


@dataclass
class ImportReport:
    """Counts per section (created, updated, unchanged, rejected) and the rejections.

    For readings and payments "created" means accepted and "unchanged" a duplicate.
    """

    sections: dict[str, SectionCounts] = field(
        default_factory=lambda: {s: SectionCounts() for s in SECTIONS}
    )
    rejections: list[Rejection] = field(default_factory=list)
    # natural key -> index of the rejected record, per section (for children's reasons)
    rejected_keys: dict[str, dict[str, int]] = field(
        default_factory=lambda: {s: {} for s in SECTIONS}
    )

    def count(self, section: str, outcome: str, n: int = 1) -> None:
        counts = self.sections[section]
        setattr(counts, outcome, getattr(counts, outcome) + n)

    def reject(self, section: str, index: int, key: str | None, reason: str) -> None:
        self.count(section, "rejected")
        self.rejections.append(Rejection(section, index, key, reason))
        if key is not None:
            self.rejected_keys[section].setdefault(key, index)

    def parent_reason(self, section: str, field_name: str, key: str, what: str) -> str:
        """Why a reference to `key` in `section` does not resolve (rejected or unknown)."""
        index = self.rejected_keys[section].get(key)
        if index is not None:
            return f"{field_name}: {what} {key} was rejected ({section}[{index}])"
        return f"{field_name}: unknown {what} {key}"

    @property
    def rejected(self) -> int:
        return sum(c.rejected for c in self.sections.values())

    @property
    def changed(self) -> int:
        return sum(c.created + c.updated for c in self.sections.values())

    def reasons(self, section: str) -> Counter[str]:
        return Counter(r.reason for r in self.rejections if r.section == section)

    def to_dict(self) -> dict[str, Any]:
        return {
            "sections": {s: c.to_dict() for s, c in self.sections.items()},
            "rejected": self.rejected,
            "rejections": [r.to_dict() for r in self.rejections],
        }

    def summary(self) -> str:
        lines = [f"{'section':<16}{'created':>9}{'updated':>9}{'unchanged':>11}{'rejected':>10}"]
        for name, c in self.sections.items():
            if c.total:
                lines.append(
                    f"{name:<16}{c.created:>9}{c.updated:>9}{c.unchanged:>11}{c.rejected:>10}"
                )
        if not any(c.total for c in self.sections.values()):
            lines.append("(the document holds no records)")
        if self.rejections:
            lines.append(f"{self.rejected} record(s) rejected:")
            for r in self.rejections[:_SHOWN]:
                key = f" {r.key}" if r.key else ""
                lines.append(f"  {r.section}[{r.index}]{key}: {r.reason}")
            if len(self.rejections) > _SHOWN:
                lines.append(f"  … and {len(self.rejections) - _SHOWN} more")
        else:
            lines.append("nothing rejected")
        return "\n".join(lines)
