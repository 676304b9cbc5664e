"""`billing` subcommands of the rating side: the clerk's rate check and tariff simulation."""

from __future__ import annotations

import argparse
import sys

from app.bootstrap import one_connection
from app.settings import Settings


def cmd_rate_check(settings: Settings, args: argparse.Namespace) -> int:
    from billing import BillingError
    from billing.rate_check import explain, load_period, rate

    try:
        with one_connection(settings) as conn:
            data = load_period(conn, args.customer, args.period)
        draft = rate(data.customer_id, data.period, data.contracts, data.consumption,
                     data.catalog, data.demand)
    except BillingError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    sys.stdout.write(explain(draft, data.contracts, data.consumption, data.catalog,
                             data.invoice, demand=data.demand))
    return 0


def cmd_simulate(settings: Settings, args: argparse.Namespace) -> int:
    from billing import BillingError
    from billing.rate_check import (
        check_period,
        explain,
        given_consumption,
        load_period,
        rate,
        retariff,
        simulation_text,
        tariff_for_category,
    )
    from stream.pipeline import load_catalog

    try:
        if args.category:
            check_period(args.period)
            with one_connection(settings) as conn:
                args.tariff = tariff_for_category(load_catalog(conn), args.service,
                                                  args.category, args.period)
        if args.customer:
            with one_connection(settings) as conn:
                data = load_period(conn, args.customer, args.period)
            current = rate(data.customer_id, data.period, data.contracts, data.consumption,
                           data.catalog, data.demand)
            moved = retariff(data.contracts, args.service, args.tariff, data.catalog,
                             data.period)
            simulated = rate(data.customer_id, data.period, moved, data.consumption,
                             data.catalog, data.demand)
            before = sorted({c.tariff_code for c in data.contracts if c.service == args.service})
            title = (f"Simulation: customer {data.customer_id}, period {data.period}, "
                     f"{args.service} under {args.tariff} instead of {', '.join(before)}")
            sys.stdout.write(simulation_text(current, simulated, title))
            return 0
        if args.kwh_vt is None and args.kwh_mt is None:
            raise BillingError("give --customer, or --kwh-vt and/or --kwh-mt")
        check_period(args.period)
        with one_connection(settings) as conn:
            catalog = load_catalog(conn)
        contracts, rows = given_consumption(args.period, args.tariff, args.kwh_vt or "0",
                                            args.kwh_mt or "0", catalog)
        draft = rate("(none)", args.period, contracts, rows, catalog)
    except BillingError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    sys.stdout.write(explain(draft, contracts, rows, catalog, simulation=True))
    return 0


def add_rating_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    rc = sub.add_parser("rate-check", help="re-rate a customer's period and explain each step")
    rc.add_argument("--customer", required=True)
    rc.add_argument("--period", required=True, help="YYYY-MM")
    rc.set_defaults(func=cmd_rate_check)
    sim = sub.add_parser("simulate", help="price a period's consumption under another tariff")
    sim.add_argument("--customer", help="the customer whose consumption is priced")
    sim.add_argument("--period", required=True, help="YYYY-MM")
    which = sim.add_mutually_exclusive_group(required=True)
    which.add_argument("--tariff", help="tariff code, e.g. EL-OP")
    which.add_argument("--category", help="the --service tariff of this category, e.g."
                       " other_consumption_0_4kv")
    sim.add_argument("--service", default="electricity",
                     choices=("electricity", "water", "waste"),
                     help="the contracts moved to --tariff (default electricity)")
    sim.add_argument("--kwh-vt", help="without --customer: VT (1.8.1) kWh of the month")
    sim.add_argument("--kwh-mt", help="without --customer: MT (1.8.2) kWh of the month")
    sim.set_defaults(func=cmd_simulate)
