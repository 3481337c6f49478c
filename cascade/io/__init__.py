"""Files in and out: Binance kline CSVs (:mod:`~cascade.io.klines`) and atomic writes
(:mod:`~cascade.io.files`)."""
