"""benchmarks.average_pick's tables: how often a score agrees with the judge, and what each rule
serves (pure functions over the rows a run records)."""

from benchmarks import average_pick


def rows(step: int, live: tuple, average: tuple) -> list[dict]:
    """One scored step: (judge Fréchet, swd, kid_discriminator) of the live weights and of the
    ramp-up 0.05 average (the ramp-up 1 and 0.2 averages score like the live weights)."""

    def row(side, scores):
        truth, swd, kid = scores
        return {"cell": "c", "seed": 0, "step": step, "side": side, "judge_frechet": truth,
                "swd": swd, "kid_discriminator": kid}  # fmt: skip

    others = [row(name, live) for name in average_pick.RAMPUPS if "0.05" not in name]
    return [row("live", live), row("average (ramp-up 0.05)", average), *others]


def test_agreement_counts_the_steps_where_a_score_chose_as_the_judge_did():
    # Step 1: the judge prefers live; SWD picks the average, the KID live.
    # Step 2: the judge prefers the average; both scores pick it.
    found = rows(1, (100, 5, 0.1), (200, 4, 0.3)) + rows(2, (100, 5, 0.3), (50, 4, 0.1))
    table = {entry["average"]: entry for entry in average_pick.agreement(found)}
    short = table["average (ramp-up 0.05)"]
    assert short["judge prefers it"] == 1
    assert short["swd agrees"] == "1/2" and short["kid_discriminator agrees"] == "2/2"


def test_served_lists_what_each_rule_would_serve_at_each_step():
    found = rows(1, (100, 5, 0.1), (200, 4, 0.3)) + rows(2, (100, 5, 0.3), (50, 4, 0.1))
    by_rule = {entry["rule"]: entry["judge Fréchet served, by step"]
               for entry in average_pick.served(found)}  # fmt: skip
    assert by_rule["ramp-up 0.05, discriminator KID (with an average)"] == "100 50"
    assert by_rule["live weights only (now the default)"] == "100 100"
    assert by_rule["ramp-up 1, SWD (before)"] == "100 100"  # ties: that average is the live
