"""The benchmark workload generator: deterministic, well-formed, the mix it claims."""

import numpy as np
import pytest

pytest.importorskip("lxdex._core")

from lxdex.bench.workload import SCENARIOS, describe, generate  # noqa: E402
from lxdex.enums import CommandKind  # noqa: E402


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_generator_is_deterministic_and_well_formed(scenario):
    a = generate(5_000, scenario, seed=3)
    assert a.tobytes() == generate(5_000, scenario, seed=3).tobytes()
    assert a.tobytes() != generate(5_000, scenario, seed=4).tobytes()
    sub = a["kind"] == CommandKind.SUBMIT
    ids = a["order_id"][sub]
    assert len(np.unique(ids)) == len(ids), "new order ids are unique"
    assert (a["qty"][sub] > 0).all()
    # Cancels and amends only name orders submitted earlier, by their owner.
    first_seen = {int(i): n for n, i in zip(np.flatnonzero(sub), ids)}
    owner = {int(i): int(o) for i, o in zip(ids, a["owner"][sub])}
    for n in np.flatnonzero(~sub):
        oid = int(a["order_id"][n])
        assert first_seen[oid] < n and owner[oid] == int(a["owner"][n])


def test_describe_reports_the_mix_measured_on_a_book():
    mix = describe(generate(20_000, "balanced", seed=1))
    assert mix["commands"] == 20_000
    assert 0.10 < mix["ioc_share_of_new"] < 0.25
    assert 0.12 < mix["resting_orders_amended_share"] < 0.30
    assert mix["resting_orders_cancelled_share"] > 0.6
    assert mix["fills"] > 0 and mix["rejected_commands_share"] < 0.1
