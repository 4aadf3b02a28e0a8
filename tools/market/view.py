"""The human views of `fleet offers` and `fleet place` (rich tables)."""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from contracts.offers import Offer
from tools.market.report import Report
from tools.termout import stdout_console

STATE_STYLE = {"ok": "green", "unavailable": "dim", "auth": "bold red", "breaker": "yellow"}


def _available(offer: Offer) -> str:
    if offer.available is None:
        return "yes"
    return "sold out" if offer.available <= 0 else str(offer.available)


def offers_table(offers: list[Offer], title: str, role: list[str] | None = None) -> Table:
    """One row per offer in the given order; `role` labels rows (choice, runner-up, ...)."""
    table = Table(title=title, title_justify="left", header_style="bold")
    if role is not None:
        table.add_column("", style="bold")
    for name, justify in (
        ("provider", "left"),
        ("gpu", "left"),
        ("vendor", "left"),
        ("tier", "left"),
        ("VRAM", "right"),
        ("GPUs", "right"),
        ("$/h", "right"),
        ("reliability", "right"),
        ("region", "left"),
        ("available", "right"),
    ):
        table.add_column(name, justify=justify, no_wrap=name != "region")  # type: ignore[arg-type]
    for i, o in enumerate(offers):
        cells = [
            o.provider,
            o.gpu_model,
            o.vendor,
            o.tier,
            f"{o.vram_gb:g} GB",
            str(o.num_gpus),
            f"{o.usd_per_hour:.2f}",
            f"{o.reliability * 100:.1f}%",
            o.region or "-",
            _available(o),
        ]
        table.add_row(*([role[i]] if role is not None else []), *(escape(c) for c in cells))
    return table


def provider_lines(report: Report, out: Console) -> None:
    """One line per provider: its state and, when not ok, why and what to set."""
    for name, status in sorted(report.providers.items()):
        style = STATE_STYLE.get(status.state, "red")
        detail = f"  {escape(status.detail)}" if status.detail else ""
        out.print(f"  [{style}]{name:<10} {status.state}[/{style}]{detail}", soft_wrap=True)


def show_offers(report: Report) -> None:
    """`fleet offers`: the table, cheapest first, then how each provider answered."""
    out = stdout_console(highlight=False)
    if report.offers:
        out.print(offers_table(report.offers, f"{len(report.offers)} offers, cheapest first"))
    else:
        out.print("No offers match.")
    if report.providers:
        out.print(f"providers ({report.source}):")
        provider_lines(report, out)
    else:
        out.print(f"(from the {report.source})")


def show_placement(report: Report) -> None:
    """`fleet place`: the choice, the runner-up and the reasoning."""
    out = stdout_console(highlight=False)
    p = report.placement
    if p is None or not p.ok or p.offer is None:
        out.print(escape(f"Nothing fits. {p.reasoning if p else ''}".strip()))
    else:
        rows = [p.offer, *p.alternatives]
        roles = ["choice", "runner-up", *["alternative"] * (len(rows) - 2)][: len(rows)]
        out.print(offers_table(rows, "Placement", role=roles))
        out.print(escape(p.reasoning), soft_wrap=True)
    if report.providers:
        out.print(f"providers ({report.source}):")
        provider_lines(report, out)
    else:
        out.print(f"(from the {report.source})")
