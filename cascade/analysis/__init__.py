"""Analysis over runs: targets and ``validate`` (:mod:`~cascade.analysis.targets`),
one-at-a-time ``sensitivity`` (:mod:`~cascade.analysis.sensitivity`) and ``replay`` along a
kline path (:mod:`~cascade.analysis.replay`)."""
