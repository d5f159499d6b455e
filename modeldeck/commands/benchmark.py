"""`modeldeck benchmark TEAM/NAME VERSION`: ask for a version's latency and throughput at batch 1/8/32."""

from __future__ import annotations

from rich.console import Console

from modeldeck.commands.arguments import CommandAdd, json_flag, model_reference, wait_flags
from modeldeck.commands.context import Context
from modeldeck.commands.tables import benchmark_table
from modeldeck.output import Result
from modeldeck.progress import job_label
from modeldeck.resources import Version


def register(add: CommandAdd) -> None:
    benchmark = add("benchmark", benchmark_run, "benchmark a version: latency and throughput at batch 1/8/32")
    benchmark.add_argument("model", metavar="TEAM/NAME", type=model_reference)
    benchmark.add_argument("version", metavar="VERSION", type=int)
    wait_flags(benchmark, "the benchmark's numbers")
    json_flag(benchmark)


def benchmark_run(ctx: Context) -> Result:
    args = ctx.args
    job = ctx.client.benchmark(args.model, args.version)
    ctx.output.line(f"queued {job_label(job)}")
    version: Version | None = None
    if args.wait:
        with ctx.output.progress.job(job_label(job)) as on_progress:
            job = ctx.client.wait_job(job["id"], timeout=args.timeout, on_progress=on_progress)
        version = ctx.client.get_version(args.model, args.version)

    def render(console: Console) -> None:
        if version is None or not version.get("benchmark"):
            console.print(f"{job_label(job)}: {job['status']}. Wait for it with --wait, or see it with `versions`.")
            return
        benchmark, memory = version["benchmark"], version["benchmark"].get("memory") or {}
        console.print(
            f"v{version['number']} of {version['model']} ({version['format']}): loads in {benchmark.get('load_ms')} ms,"
            f" peak memory {memory.get('peak_rss_mib', '?')} MiB"
        )
        console.print(benchmark_table(version))

    return Result({"job": job, "version": version}, render)
