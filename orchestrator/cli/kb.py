"""``orchestrator ingest`` and ``orchestrator kb list|search|delete``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from orchestrator.config import Settings
from orchestrator.errors import RequestError
from orchestrator.knowledge import KnowledgeBase
from orchestrator.retrieval.ingest import IngestReport

console = Console()
err_console = Console(stderr=True)
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON.")]


def _kb(settings: Settings) -> KnowledgeBase:
    return KnowledgeBase.from_settings(settings)


def ingest_command(settings: Settings, paths: list[Path], collection: str, tags: list[str],
                   as_json: bool) -> IngestReport:
    """Ingest with a progress bar (unless JSON) and print the summary."""
    kb = _kb(settings)
    if as_json:
        report = kb.ingest(paths, collection, tags=tags)
        console.print_json(json.dumps(report.to_dict()))
        return report
    columns = (TextColumn("[bold]ingest[/bold] {task.description}"), BarColumn(),
               MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=True) as progress:
        task = progress.add_task(collection, total=None)

        def advance(done: int, total: int, name: str) -> None:
            progress.update(task, completed=done, total=total, description=name[-50:])

        report = kb.ingest(paths, collection, tags=tags, on_progress=advance)
    for path, reason in report.failed:
        console.print(f"[red]failed[/red] {path}: {reason}", highlight=False)
    console.print(
        f"{collection}: {report.files} files, {report.documents} documents, "
        f"{report.chunks_added} chunks added, {report.skipped} unchanged (skipped), "
        f"{len(report.failed)} failed, {report.seconds:.1f}s", highlight=False)
    return report


def kb_list(settings: Settings, as_json: bool) -> None:
    stats = _kb(settings).collections()
    if as_json:
        console.print_json(json.dumps([s.__dict__ for s in stats]))
        return
    table = Table(title="Knowledge base")
    for column in ("collection", "chunks", "sources", "embedder", "dimension"):
        table.add_column(column)
    for s in stats:
        table.add_row(s.name, str(s.chunks), str(s.sources), s.embedder, str(s.dimension))
    console.print(table if stats else "The knowledge base is empty: use `orchestrator ingest`.")


def kb_search(settings: Settings, query: str, collections: list[str], k: int, mode: str,
              source: str | None, tags: list[str], as_json: bool, fusion: str | None = None
              ) -> None:
    try:
        hits = _kb(settings).search(query, collections, k=k, mode=mode, source=source,
                                    tags=tags, fusion=fusion)
    except RequestError as exc:
        hint = "--mode" if "mode" in str(exc) else "--fusion"
        raise typer.BadParameter(str(exc).split(": ", 1)[-1], param_hint=hint) from None
    if as_json:
        console.print_json(json.dumps([
            {"collection": h.collection, "source": h.source, "chunk": h.position,
             "citation": h.citation, "score": h.score, "heading": h.heading, "text": h.text}
            for h in hits]))
        return
    if not hits:
        console.print("No matches.")
    for rank, hit in enumerate(hits, start=1):
        console.print(f"[bold]{rank}. {escape(f'[{hit.citation}]')}[/bold] score "
                      f"{hit.score:.4f} [dim]{escape(hit.collection)} / "
                      f"{escape(hit.heading)}[/dim]", highlight=False)
        console.print(hit.text.strip()[:600], highlight=False, markup=False)
        console.print()


def kb_delete(settings: Settings, collection: str, source: str | None, yes: bool,
              as_json: bool) -> bool:
    """Delete a collection or one source, asking first unless ``yes``; False if declined.

    The question goes to stderr, so ``--json`` output stays one JSON object.
    """
    kb = _kb(settings)
    plan = kb.deletion(collection, source)
    what = (f"collection {collection!r}" if source is None
            else f"{source!r} from {collection!r}")
    size = f"{plan.chunks} chunks from {len(plan.sources)} sources"
    if not yes and not typer.confirm(f"Delete {what} ({size})?", err=True):
        err_console.print("Nothing deleted.")
        return False
    gone = kb.delete(collection, source)
    if as_json:
        console.print_json(json.dumps(gone.to_dict()))
    else:
        console.print(f"Deleted {what}: {gone.chunks} chunks from {len(gone.sources)} sources.",
                      highlight=False, markup=False)
    return True
