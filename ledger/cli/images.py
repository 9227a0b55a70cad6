"""``ledger images``, ``ledger datasets`` and ``ledger subjects erase``: curator work.

Imports commit file by file, so an interrupted import resumes by running it again:
files already stored are recognised by content hash and reported as duplicates.
"""

from __future__ import annotations

import json
import zipfile
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from ledger.cli.consents import actor, subjects_app
from ledger.cli.output import (
    HomeOpt,
    JsonOpt,
    console,
    emit_json,
    err_console,
    read_only,
    settings_for,
    table,
    unit_of_work,
)
from ledger.errors import LedgerError

if TYPE_CHECKING:
    from ledger.config import Settings
    from ledger.images.columns import Vault

images_app = typer.Typer(help="DICOM instances: import and inspect.", no_args_is_help=True)
datasets_app = typer.Typer(help="Frozen, Merkle-identified sets of images.", no_args_is_help=True)


def columns_vault(settings: Settings) -> Vault:
    """Where the CLI keeps datasets' packed columns: as the server does."""
    from ledger import wiring

    return wiring.vault(settings)


def _sources(path: Path) -> Iterator[tuple[str, bytes]]:
    """(name, bytes) of every file under ``path``, looking inside zip archives."""
    candidates = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    for file in candidates:
        if zipfile.is_zipfile(file):
            with zipfile.ZipFile(file) as archive:
                for info in archive.infolist():
                    if not info.is_dir():
                        yield f"{file.name}!{info.filename}", archive.read(info)
        else:
            yield str(file.relative_to(path) if path.is_dir() else file.name), file.read_bytes()


def _count(path: Path) -> int:
    total = 0
    for file in [path] if path.is_file() else (p for p in path.rglob("*") if p.is_file()):
        if zipfile.is_zipfile(file):
            with zipfile.ZipFile(file) as archive:
                total += sum(1 for i in archive.infolist() if not i.is_dir())
        else:
            total += 1
    return total


@images_app.command("import")
def import_images(
    path: Annotated[Path, typer.Argument(help="A DICOM file, a folder, or a zip archive.")],
    home: HomeOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Import DICOM files; re-run to resume (stored files are reported as duplicates)."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )

    from ledger import wiring
    from ledger.images import service

    if not path.exists():
        err_console.print(f"[bold red]error:[/] {path} does not exist")
        raise typer.Exit(2)
    settings = settings_for(home)
    keys = wiring.keys(settings)
    store = wiring.store(settings)
    report: dict[str, Any] = {"imported": 0, "duplicates": [], "failed": [], "subjects_created": 0}
    progress = Progress(
        TextColumn("importing"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err_console,
        disable=json_out,
    )
    with progress:
        task = progress.add_task("import", total=_count(path))
        for name, data in _sources(path):
            try:
                with unit_of_work(home) as session:
                    done = service.ingest(
                        session,
                        store,
                        keys,
                        data,
                        default_issuer=settings.default_issuer,
                        actor=actor(),
                    )
                if done.duplicate:
                    report["duplicates"].append(name)
                else:
                    report["imported"] += 1
                    report["subjects_created"] += int(done.subject_created)
            except LedgerError as exc:
                report["failed"].append({"file": name, "reason": exc.detail})
            progress.advance(task)
    if json_out:
        emit_json(report)
    else:
        console.print(
            f"Imported {report['imported']} image(s) ({report['subjects_created']} new subjects); "
            f"{len(report['duplicates'])} already stored; {len(report['failed'])} failed."
        )
        for item in report["failed"][:50]:
            console.print(f"  - {item['file']}: {item['reason']}", highlight=False)
    if report["failed"]:
        raise typer.Exit(1)


@images_app.command("show")
def show_image(
    image_id: Annotated[str, typer.Argument()], home: HomeOpt = None, json_out: JsonOpt = False
) -> None:
    """An image's index entry."""
    from ledger.images import service

    with read_only(home) as session:
        info = service.public(service.get(session, image_id))
    if json_out:
        emit_json(info)
    else:
        table(f"Image {image_id}", ["field", "value"], [(k, v) for k, v in info.items()])


@images_app.command("sync")
def sync_images(
    dicomweb: Annotated[
        str, typer.Option("--dicomweb", help="The PACS's DICOMweb root, e.g. http://pacs/dicom-web")
    ],
    user: Annotated[str | None, typer.Option("--user", help="HTTP basic user")] = None,
    password_file: Annotated[
        Path | None, typer.Option("--password-file", help="A file holding the password")
    ] = None,
    study_date_from: Annotated[
        str | None, typer.Option("--study-date-from", help="YYYY-MM-DD: studies from then on")
    ] = None,
    modality: Annotated[str | None, typer.Option("--modality", help="e.g. CT")] = None,
    home: HomeOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Pull new instances from a PACS (QIDO-RS, then WADO-RS) through the same checks as
    an import. Re-run to resume or to fetch only what is new: the last position is kept
    per source under LEDGER_HOME/sync/."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )

    from ledger import wiring
    from ledger.db import transaction
    from ledger.home import open_engine
    from ledger.images import dicomweb_sync

    day = None
    if study_date_from:
        try:
            day = date.fromisoformat(study_date_from)
        except ValueError:
            err_console.print("[bold red]error:[/] --study-date-from must be YYYY-MM-DD")
            raise typer.Exit(2) from None
    password = None
    if password_file is not None:
        password = password_file.read_text().rstrip("\r\n")
    source = dicomweb_sync.Source(
        dicomweb,
        user=user,
        password=password,
        study_date_from=day,
        modality=modality.upper() if modality else None,
    )
    settings = settings_for(home)
    engine = open_engine(settings)
    state = dicomweb_sync.State(dicomweb_sync.state_path(settings.home, source), dicomweb)
    progress = Progress(
        TextColumn("syncing"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[mb]:.1f} MB"),
        TimeElapsedColumn(),
        console=err_console,
        disable=json_out,
    )
    fetched = [0]
    try:
        with progress:
            task = progress.add_task("sync", total=None, mb=0.0)

            def advance(size: int) -> None:
                fetched[0] += size
                progress.update(task, advance=1, mb=fetched[0] / 1e6)

            report = dicomweb_sync.sync(
                source,
                state=state,
                transaction=lambda: transaction(engine),
                store=wiring.store(settings),
                keys=wiring.keys(settings),
                default_issuer=settings.default_issuer,
                actor=actor(),
                on_total=lambda n: progress.update(task, total=n),
                on_instance=advance,
            )
    finally:
        engine.dispose()
    if json_out:
        emit_json(report.as_json())
    else:
        console.print(
            f"{report.studies} stud(ies) listed, {report.studies_unchanged} unchanged; "
            f"fetched {report.fetched} instance(s) ({report.bytes / 1e6:.1f} MB): "
            f"{report.stored} stored, {report.duplicates} already stored, "
            f"{len(report.failed)} failed; {report.already_indexed} already in the index."
        )
        for item in report.failed[:50]:
            console.print(f"  - {item['sop_instance_uid']}: {item['reason']}", highlight=False)
    if report.failed:
        raise typer.Exit(1)


@datasets_app.command("create")
def create_dataset(
    name: Annotated[str, typer.Option(help="Unique name; datasets are frozen.")],
    modality: Annotated[list[str] | None, typer.Option("--modality")] = None,
    body_part: Annotated[list[str] | None, typer.Option("--body-part")] = None,
    site: Annotated[list[str] | None, typer.Option("--site")] = None,
    study_date_from: Annotated[str | None, typer.Option("--from", help="YYYY-MM-DD")] = None,
    study_date_to: Annotated[str | None, typer.Option("--to", help="YYYY-MM-DD")] = None,
    ids_file: Annotated[
        Path | None, typer.Option("--ids-file", help="File with one image id per line.")
    ] = None,
    home: HomeOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Freeze a dataset by filter or by an explicit list of image ids."""
    from ledger.images import datasets
    from ledger.images.datasets import DatasetCreate, DatasetFilter

    try:
        if ids_file is not None:
            ids = [line.strip() for line in ids_file.read_text().splitlines() if line.strip()]
            body = DatasetCreate(name=name, image_ids=ids)
        else:
            body = DatasetCreate(
                name=name,
                filter=DatasetFilter(
                    modalities=modality or [],
                    body_parts=body_part or [],
                    sites=site or [],
                    study_date_from=date.fromisoformat(study_date_from)
                    if study_date_from
                    else None,
                    study_date_to=date.fromisoformat(study_date_to) if study_date_to else None,
                ),
            )
    except ValueError as exc:
        err_console.print(f"[bold red]error:[/] {exc}")
        raise typer.Exit(2) from exc
    vault = columns_vault(settings_for(home))
    with unit_of_work(home) as session:
        made = datasets.public(datasets.create(session, body, actor=actor(), vault=vault))
    if json_out:
        emit_json(made)
    else:
        console.print(
            f"Dataset {made.id} '{made.name}': {made.image_count} image(s), "
            f"manifest root {made.manifest_root}"
        )


@datasets_app.command("show")
def show_dataset(
    dataset_id: Annotated[str, typer.Argument()],
    manifest: Annotated[bool, typer.Option("--manifest", help="Also list every image.")] = False,
    home: HomeOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """A dataset, and with --manifest its images in leaf order."""
    from ledger.images import datasets

    with read_only(home) as session:
        info = datasets.public(datasets.get(session, dataset_id))
        items: list[dict[str, Any]] = []
        if manifest:
            start: int | None = 0
            while start is not None:
                _, page, start = datasets.manifest(session, dataset_id, start, 10_000)
                items.extend(page)
    if json_out:
        emit_json({**info.model_dump(mode="json"), **({"items": items} if manifest else {})})
        return
    console.print(f"Dataset {info.id} '{info.name}': {info.image_count} image(s)")
    console.print(f"  manifest root {info.manifest_root}")
    console.print(f"  selection {json.dumps(info.selection)}", highlight=False)
    for item in items:
        console.print(f"  {item['position']:>6} {item['image_id']} {item['sha256']}")


@subjects_app.command("erase")
def erase_subject(
    subject_id: Annotated[str, typer.Argument()],
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask for confirmation.")] = False,
    home: HomeOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Erase a subject: shred its image key, delete its images, unlink its log entries."""
    if not yes and not typer.confirm(f"Erase subject {subject_id}? This cannot be undone"):
        raise typer.Exit(1)
    from ledger import wiring
    from ledger.images import service

    settings = settings_for(home)
    with unit_of_work(home) as session:
        addresses = service.erase_subject(
            session, subject_id, actor=actor(), vault=columns_vault(settings)
        )
    store = wiring.store(settings)
    for address in addresses:
        store.delete(address)
    if json_out:
        emit_json({"subject_id": subject_id, "erased": True, "images": len(addresses)})
    else:
        console.print(f"Erased subject {subject_id} ({len(addresses)} image(s) shredded).")
