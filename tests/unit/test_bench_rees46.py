"""The real-data benchmark runs on the shared REES46 sample and prints every row with its interval."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench" / "bench_rees46.py"
FIGURE = r"(\d\.\d{3}) \[(\d\.\d{3}), (\d\.\d{3})\]"


def _bench():
    spec = importlib.util.spec_from_file_location("bench_rees46", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_replay_rankers_and_training_on_the_rees46_sample(rees46_sample, capsys):
    assert _bench().main(["--sample", str(rees46_sample), "--draws", "50"]) == 0
    out = capsys.readouterr().out
    rows = {}
    for line in out.splitlines():
        match = re.match(r"(\S+(?: order)?)\s+(purchase|cart)\s+(\d+)\s+" + FIGURE + r"\s+" + FIGURE, line)
        if match:
            rows[(match[1], match[2])] = [float(match[i]) for i in range(4, 10)]
    names = {"popularity", "trending", "item-knn", "sknn", "blend order", "propensity", "rank:ndcg"}
    assert {name for name, _ in rows} == names
    for (name, kind), (hr, hr_low, hr_high, ndcg, ndcg_low, ndcg_high) in rows.items():
        assert hr_low <= hr <= hr_high and ndcg_low <= ndcg <= ndcg_high, (name, kind)
    # on real traffic a purchase follows a view of the product: co-occurrence beats popularity clearly
    assert rows[("item-knn", "purchase")][4] > rows[("popularity", "purchase")][5]
    aucs = dict(re.findall(r"^(xgboost|din|popularity)\s+(\d\.\d{3}) \[", out, flags=re.M))
    assert set(aucs) == {"xgboost", "din", "popularity"}
    assert "the gate picks" in out
