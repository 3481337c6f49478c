"""Exchange rules: dated bracket tables and the kernels that apply them.

:mod:`~cascade.rules.brackets` (maintenance-margin brackets and per-venue rules),
:mod:`~cascade.rules.margin` (liquidation and bankruptcy prices), :mod:`~cascade.rules.mark`
(index and mark price), :mod:`~cascade.rules.funding`, :mod:`~cascade.rules.partial` (partial
liquidation, backstop) and :mod:`~cascade.rules.adl` (auto-deleveraging ranking and settlement).
Sources: ``shared/reference/mechanics.md`` and the comments beside each table.
"""
