"""The benchmark commands run and report (their figures are read by people, not asserted)."""

from benchmarks import identity


def test_identity_benchmark_builds_the_graph_it_describes(capsys):
    assert identity.main(["--identifiers", "3000"]) == 0
    out = capsys.readouterr().out
    # 1,004 people (ceil(3000 / 2.99)), four events each; people 1, 101, ..., 1001 share the
    # previous person's device: 3 x 1,004 - 11 identifiers, and each shared device keeps a
    # person of its own for its events before any login.
    assert "3,001 identifiers, 4,016 events" in out
    assert "persons 1,015, shared devices 11," in out
