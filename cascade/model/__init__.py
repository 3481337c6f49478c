"""Model inputs: the scenario schema (:mod:`~cascade.model.scenario`), the synthetic population
(:mod:`~cascade.model.population`, :mod:`~cascade.model.history`), the market parameters and
flows (:mod:`~cascade.model.market`) and the market of venues built from a scenario
(:mod:`~cascade.model.venues`)."""
