"""``cascade liq-price``: liquidation and bankruptcy price of one position."""

from __future__ import annotations

import json

NAME = "liq-price"
HELP = "Liquidation and bankruptcy price of one position (Binance / Hyperliquid brackets)."


def number(text: str) -> float:
    """A finite number (``1e5``, ``100_000``)."""
    import argparse
    import math

    try:
        x = float(text.replace("_", ""))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(x):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return x


def add_arguments(parser) -> None:
    from cascade.rules.brackets import VENUES

    parser.add_argument("--venue", choices=VENUES, default="binance",
                        help="venue whose brackets and rules apply (default: binance)")
    parser.add_argument("--symbol", default="BTCUSDT",
                        help="BTCUSDT or ETHUSDT (hyperliquid also BTC, ETH); default BTCUSDT")
    parser.add_argument("--side", choices=("long", "short"), required=True)
    parser.add_argument("--entry", type=number, required=True, metavar="PRICE",
                        help="entry price, USD per coin")
    parser.add_argument("--size", type=number, required=True, metavar="COIN",
                        help="position size in coin")
    parser.add_argument("--leverage", type=number, required=True, metavar="L",
                        help="leverage (at most the bracket maximum)")
    parser.add_argument("--margin", choices=("isolated", "cross"), default="isolated",
                        help="margin mode (default: isolated)")
    parser.add_argument("--wallet", type=number, default=None, metavar="USD",
                        help="wallet behind the position (default: initial margin size*entry/L)")
    parser.add_argument("--date", default=None, metavar="YYYY-MM-DD",
                        help="use the brackets in force on this date (default: the latest)")
    parser.add_argument("--other-mm", type=number, default=0.0, metavar="USD",
                        help="cross: maintenance margin of the account's other positions")
    parser.add_argument("--other-upnl", type=number, default=0.0, metavar="USD",
                        help="cross: unrealized PnL of the account's other positions")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")


def _num(x: float, digits: int = 2) -> str:
    return f"{x:,.{digits}f}"


def format_table(r: dict) -> str:
    """The result of :func:`cascade.rules.margin.liquidation_price` as an aligned two-column table."""
    lp = _num(r["liquidation_price"]) if r["liquidatable"] else "none (cannot be liquidated)"
    valid_to = r["table_valid_to"] or "now"
    rows = [
        ("position", (f"{r['venue']} {r['symbol']} {r['side']} {r['size']:g} @ "
                     f"{_num(r['entry_price'])}, {r['leverage']:g}x {r['margin']}")),
        ("notional (USD)", _num(r["notional_usd"])),
        ("wallet (USD)", _num(r["wallet_usd"])),
    ]
    if r["margin"] == "cross":
        rows += [("other positions MM (USD)", _num(r["other_mm_usd"])),
                 ("other positions uPnL (USD)", _num(r["other_upnl_usd"]))]
    rows += [
        ("liquidation price", lp),
        ("bankruptcy price", _num(r["bankruptcy_price"])),
        ("bracket at liquidation", (f"{r['bracket']} (MMR {100 * r['mmr']:.4g}%, "
                                   f"maintenance amount {_num(r['maintenance_amount'])})")),
        ("maintenance margin at LP", _num(r["maintenance_margin_at_liq_usd"])),
        ("entry bracket / max lev", f"{r['entry_bracket']} / {r['max_leverage']:g}x"),
        ("liquidation fee rate", f"{100 * r['liquidation_fee_rate']:.4g}%"),
        ("brackets in force", f"{r['table_valid_from']} to {valid_to}"),
        ("source", r["table_source"]),
    ]
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


def _warn_if_liquidated_at_once(r: dict) -> None:
    """A wallet below the maintenance margin at the entry price gives a liquidation price on the
    wrong side of the entry (above a long's, below a short's): the position would be liquidated
    as soon as it opened. The figures are still the venue's formula; say so on stderr and in the
    result (``liquidated_at_entry``)."""
    import math
    import sys

    lp, ep = r["liquidation_price"], r["entry_price"]
    at_once = bool(r["liquidatable"] and math.isfinite(lp)
                   and (lp >= ep if r["side"] == "long" else lp <= ep))
    r["liquidated_at_entry"] = at_once
    if at_once:
        print(f"cascade: warning: --wallet {r['wallet_usd']:,.2f} USD is below the maintenance "
              f"margin at the entry price: the liquidation price {lp:,.2f} is "
              f"{'above' if r['side'] == 'long' else 'below'} the entry {ep:,.2f}, so the "
              "position would be liquidated at once; expected a larger --wallet or a lower "
              "--leverage", file=sys.stderr)


def main(args) -> int:
    from cascade.rules.margin import liquidation_price, parse_date

    on = parse_date(args.date, "--date")  # CascadeError for a malformed date
    r = liquidation_price(
        venue=args.venue,
        symbol=args.symbol,
        side=args.side,
        entry=args.entry,
        size=args.size,
        leverage=args.leverage,
        margin=args.margin,
        wallet=args.wallet,
        on=on,
        other_mm=args.other_mm,
        other_upnl=args.other_upnl,
    )
    _warn_if_liquidated_at_once(r)
    if args.json:
        print(json.dumps(r, indent=2))
    else:
        print(format_table(r))
    return 0
