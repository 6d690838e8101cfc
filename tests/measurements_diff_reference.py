"""The input pairing of ``teeform measurements diff`` as it was before issue 7 (quadratic list scans).

Kept as the oracle for the linear pairing (tests/test_fuzz_cli_parsers.py) and as the baseline of
benchmarks/measurements_diff_scaling.py; copied from the git history of teeform/measurements_diff.py.
"""

from __future__ import annotations

from teeform.measurements_diff import InputChange, norm_role


def reference_pair_inputs(old, new) -> list[InputChange]:
    """The pairing before issue 7 (quadratic list scans), the oracle for the linear one."""
    roles: list[str] = []
    for i in (*old, *new):
        r = norm_role(i.role)
        if r not in roles:
            roles.append(r)
    out: list[InputChange] = []
    for r in roles:
        olds = [i for i in old if norm_role(i.role) == r]
        news = [i for i in new if norm_role(i.role) == r]
        pairs = []
        for o in list(olds):
            n = next((x for x in news if x.name == o.name), None)
            if n is not None:
                pairs.append((o, n))
                olds.remove(o)
                news.remove(n)
        while olds and news:
            pairs.append((olds.pop(0), news.pop(0)))
        pairs += [(o, None) for o in olds] + [(None, n) for n in news]
        for o, n in pairs:
            if o is None:
                out.append(InputChange(r, "added", None, n))
            elif n is None:
                out.append(InputChange(r, "removed", o, None))
            elif (o.sha256, o.name, o.size) != (n.sha256, n.name, n.size):
                out.append(InputChange(r, "changed", o, n))
    return out
