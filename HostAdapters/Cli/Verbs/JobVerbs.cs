using System.CommandLine;
using Command = System.CommandLine.Command;
using FarmApi;

namespace FarmPlugins.Cli.Verbs;

/// <summary>Waits for a job with a live view; Ctrl+C leaves it running and says how to follow it.</summary>
internal static class JobWaiter
{
    public static async Task<int> WaitAsync(CliSession session, BaseFarmPlugin plugin, string jobId, CancellationToken cancellationToken)
    {
        var view = ProgressView.For(session);
        try
        {
            while (true)
            {
                var job = await plugin.GetJobAsync(jobId, cancellationToken).ConfigureAwait(false);
                view.Job(job);
                if (job.State.IsTerminal())
                {
                    view.Finish();
                    return job.State == JobState.Completed ? ExitCodes.Success : ExitCodes.JobFailed;
                }

                await Task.Delay(TimeSpan.FromMilliseconds(500), cancellationToken).ConfigureAwait(false);
            }
        }
        catch (OperationCanceledException)
        {
            view.Finish();
            await session.Err.WriteLineAsync($"farm: interrupted; job {jobId} keeps running. Follow it with: farm wait {jobId}  (or farm log {jobId} -f)")
                .ConfigureAwait(false);
            return ExitCodes.Interrupted;
        }
    }
}

/// <summary><c>farm jobs</c>.</summary>
internal sealed class JobsVerb : Verb
{
    private readonly Option<JobState?> _state = new("--state") { Description = "Only jobs in this state." };
    private readonly Option<bool> _mine = new("--mine") { Description = "Only my jobs (user@host)." };
    private readonly Option<int?> _limit = new("--limit") { Description = "At most this many, newest first." };

    protected override Command Create()
    {
        var command = new Command("jobs", Describe("List jobs, newest first.", "farm jobs --state Running --mine"));
        command.Add(_state);
        command.Add(_mine);
        command.Add(_limit);
        return command;
    }

    protected override async Task<int> RunAsync(ParseResult parse, CliSession session, CancellationToken cancellationToken)
    {
        var plugin = await session.PluginAsync(cancellationToken).ConfigureAwait(false);
        var query = new JobQuery(parse.GetValue(_state), null,
            parse.GetValue(_mine) ? $"{Environment.UserName}@{Environment.MachineName}" : null, parse.GetValue(_limit));
        var jobs = await plugin.GetJobsAsync(query, cancellationToken).ConfigureAwait(false);
        if (session.Json)
        {
            session.WriteJson(jobs.Select(JobJson.From));
        }
        else if (jobs.Count == 0)
        {
            session.Say("No jobs.");
        }
        else
        {
            session.Say(Text.Table(["ID", "NAME", "STATE", "PROGRESS", "SUBMITTED"],
                jobs.Select(j => (IReadOnlyList<string>)[j.Id, j.Name, j.State.ToString(), Text.Progress(j.Progress), Text.Time(j.SubmittedAt)])));
        }

        return ExitCodes.Success;
    }
}

/// <summary><c>farm status</c>.</summary>
internal sealed class StatusVerb : Verb
{
    private readonly Argument<string> _id = JobIdArgument();

    protected override Command Create()
    {
        var command = new Command("status", Describe("Show one job.", "farm status lq-12 --json"));
        command.Add(_id);
        return command;
    }

    protected override async Task<int> RunAsync(ParseResult parse, CliSession session, CancellationToken cancellationToken)
    {
        var plugin = await session.PluginAsync(cancellationToken).ConfigureAwait(false);
        var job = await plugin.GetJobAsync(parse.GetValue(_id)!, cancellationToken).ConfigureAwait(false);
        if (session.Json)
        {
            session.WriteJson(JobJson.From(job));
            return ExitCodes.Success;
        }

        session.Say($"job        {job.Id}");
        session.Say($"name       {job.Name}");
        session.Say($"state      {job.State}");
        session.Say($"progress   {Text.Progress(job.Progress)}");
        session.Say($"submitted  {Text.Time(job.SubmittedAt)} by {job.Submitter ?? "-"}");
        session.Say($"started    {Text.Time(job.StartedAt)}");
        session.Say($"completed  {Text.Time(job.CompletedAt)}");
        session.Say($"context    {job.RenderContextId}");
        if (job.LogFile is not null)
        {
            session.Say($"log        {job.LogFile}");
        }

        return ExitCodes.Success;
    }
}

/// <summary><c>farm tasks</c>.</summary>
internal sealed class TasksVerb : Verb
{
    private readonly Argument<string> _id = JobIdArgument();

    protected override Command Create()
    {
        var command = new Command("tasks", Describe("Show a job's tasks: labels, state, attempts, node, exit code, times.", "farm tasks lq-12"));
        command.Add(_id);
        return command;
    }

    protected override async Task<int> RunAsync(ParseResult parse, CliSession session, CancellationToken cancellationToken)
    {
        var plugin = await session.PluginAsync(cancellationToken).ConfigureAwait(false);
        var tasks = await plugin.GetTasksAsync(parse.GetValue(_id)!, cancellationToken).ConfigureAwait(false);
        if (session.Json)
        {
            session.WriteJson(tasks.Select(TaskJson.From));
            return ExitCodes.Success;
        }

        session.Say(Text.Table(["TASK", "LABELS", "STATE", "ATTEMPTS", "NODE", "EXIT", "STARTED", "ENDED"],
            tasks.Select(t => (IReadOnlyList<string>)
            [
                t.Id, t.Labels is { Count: > 0 } l ? string.Join(",", l.Select(p => $"{p.Key}={p.Value}")) : "-", t.State.ToString(),
                t.Attempts.ToString(System.Globalization.CultureInfo.InvariantCulture), t.Node ?? "-",
                t.ExitCode?.ToString(System.Globalization.CultureInfo.InvariantCulture) ?? "-", Text.Time(t.StartedAt), Text.Time(t.CompletedAt),
            ])));
        return ExitCodes.Success;
    }
}

/// <summary><c>farm log</c>.</summary>
internal sealed class LogVerb : Verb
{
    private readonly Argument<string> _id = JobIdArgument();
    private readonly Option<string?> _task = new("--task", "-t") { Description = "One task's log instead of the job's." };
    private readonly Option<bool> _follow = new("--follow", "-f") { Description = "Keep printing new lines until the job ends." };

    protected override Command Create()
    {
        var command = new Command("log", Describe("Print a job's render log (or one task's).", "farm log lq-12 -f"));
        command.Add(_id);
        command.Add(_task);
        command.Add(_follow);
        return command;
    }

    protected override async Task<int> RunAsync(ParseResult parse, CliSession session, CancellationToken cancellationToken)
    {
        var plugin = await session.PluginAsync(cancellationToken).ConfigureAwait(false);
        var jobId = parse.GetValue(_id)!;
        var task = parse.GetValue(_task);
        var follow = parse.GetValue(_follow);
        long offset = 0;
        try
        {
            while (true)
            {
                var chunk = task is null
                    ? await plugin.ReadRenderLogAsync(jobId, offset, cancellationToken).ConfigureAwait(false)
                    : await plugin.ReadTaskLogAsync(jobId, task, offset, cancellationToken).ConfigureAwait(false);
                if (session.Json && follow)
                {
                    if (chunk.Text.Length > 0 || chunk.IsComplete)
                    {
                        session.WriteJsonLine(new { offset, nextOffset = chunk.NextOffset, text = chunk.Text, complete = chunk.IsComplete });
                    }
                }
                else if (session.Json)
                {
                    session.WriteJson(new { jobId, task, text = chunk.Text, nextOffset = chunk.NextOffset, complete = chunk.IsComplete });
                }
                else
                {
                    await session.Out.WriteAsync(chunk.Text).ConfigureAwait(false);
                    await session.Out.FlushAsync(cancellationToken).ConfigureAwait(false);
                }

                offset = chunk.NextOffset;
                if (!follow || chunk.IsComplete)
                {
                    break;
                }

                await Task.Delay(TimeSpan.FromMilliseconds(300), cancellationToken).ConfigureAwait(false);
            }
        }
        catch (OperationCanceledException)
        {
            return ExitCodes.Interrupted;
        }

        if (follow)
        {
            var job = await plugin.GetJobAsync(jobId, CancellationToken.None).ConfigureAwait(false);
            return ExitCodeOf(job);
        }

        return ExitCodes.Success;
    }
}

/// <summary><c>farm wait</c>.</summary>
internal sealed class WaitVerb : Verb
{
    private readonly Argument<string> _id = JobIdArgument();

    protected override Command Create()
    {
        var command = new Command("wait", Describe("Wait until a job ends; exit 0 when it completed, 1 when it failed or was cancelled.", "farm wait lq-12"));
        command.Add(_id);
        return command;
    }

    protected override async Task<int> RunAsync(ParseResult parse, CliSession session, CancellationToken cancellationToken)
    {
        var plugin = await session.PluginAsync(cancellationToken).ConfigureAwait(false);
        var jobId = parse.GetValue(_id)!;
        var code = await JobWaiter.WaitAsync(session, plugin, jobId, cancellationToken).ConfigureAwait(false);
        if (session.Json && code != ExitCodes.Interrupted)
        {
            session.WriteJson(JobJson.From(await plugin.GetJobAsync(jobId, CancellationToken.None).ConfigureAwait(false)));
        }

        return code;
    }
}

/// <summary><c>farm stop</c>.</summary>
internal sealed class StopVerb : Verb
{
    private readonly Argument<string> _id = JobIdArgument();

    protected override Command Create()
    {
        var command = new Command("stop", Describe("Stop a job: its running tasks are killed and it ends Cancelled.", "farm stop lq-12"));
        command.Add(_id);
        return command;
    }

    protected override async Task<int> RunAsync(ParseResult parse, CliSession session, CancellationToken cancellationToken)
    {
        var plugin = await session.PluginAsync(cancellationToken).ConfigureAwait(false);
        var jobId = parse.GetValue(_id)!;
        await plugin.StopJobAsync(jobId, cancellationToken).ConfigureAwait(false);
        var job = await plugin.GetJobAsync(jobId, cancellationToken).ConfigureAwait(false);
        if (session.Json)
        {
            session.WriteJson(JobJson.From(job));
        }
        else
        {
            session.Say($"{jobId}: {job.State}");
        }

        return ExitCodes.Success;
    }
}

/// <summary><c>farm restart</c>.</summary>
internal sealed class RestartVerb : Verb
{
    private readonly Argument<string> _id = JobIdArgument();
    private readonly Option<string[]> _tasks = new("--task", "-t") { Description = "A task to run again (repeatable); default: the failed and cancelled ones." };

    protected override Command Create()
    {
        var command = new Command("restart", Describe("Run a job's failed and cancelled tasks again (or the tasks named).", "farm restart lq-12 --task f0003"));
        command.Add(_id);
        command.Add(_tasks);
        return command;
    }

    protected override async Task<int> RunAsync(ParseResult parse, CliSession session, CancellationToken cancellationToken)
    {
        var plugin = await session.PluginAsync(cancellationToken).ConfigureAwait(false);
        var jobId = parse.GetValue(_id)!;
        var tasks = parse.GetValue(_tasks) is { Length: > 0 } named ? named : null;
        await plugin.RestartJobAsync(jobId, tasks, cancellationToken).ConfigureAwait(false);
        var job = await plugin.GetJobAsync(jobId, cancellationToken).ConfigureAwait(false);
        if (session.Json)
        {
            session.WriteJson(JobJson.From(job));
        }
        else
        {
            session.Say($"{jobId}: restarted {(tasks is null ? "its failed and cancelled tasks" : string.Join(", ", tasks))}; {job.State}");
        }

        return ExitCodes.Success;
    }
}

/// <summary><c>farm fetch</c>.</summary>
internal sealed class FetchVerb : Verb
{
    private readonly Argument<string> _id = JobIdArgument();
    private readonly Option<string> _out = new("--out", "-o") { Description = "Where to put the outputs (default: the current folder)." };

    protected override Command Create()
    {
        var command = new Command("fetch", Describe("Copy a job's outputs here; only missing or changed files are copied.", "farm fetch lq-12 --out frames"));
        command.Add(_id);
        command.Add(_out);
        return command;
    }

    protected override async Task<int> RunAsync(ParseResult parse, CliSession session, CancellationToken cancellationToken)
    {
        var plugin = await session.PluginAsync(cancellationToken).ConfigureAwait(false);
        var folder = Path.GetFullPath(parse.GetValue(_out) ?? ".");
        var view = ProgressView.For(session);
        var written = await plugin.FetchOutputsAsync(parse.GetValue(_id)!, folder, view, cancellationToken)
            .ConfigureAwait(false);
        view.Finish();
        if (session.Json)
        {
            session.WriteJson(new { folder, written });
        }
        else
        {
            session.Say($"{written.Count} file(s) written to {folder}");
        }

        return ExitCodes.Success;
    }
}

/// <summary><c>farm delete</c>.</summary>
internal sealed class DeleteVerb : Verb
{
    private readonly Argument<string> _id = JobIdArgument();

    protected override Command Create()
    {
        var command = new Command("delete", Describe("Remove a finished job, its staged files and outputs from the farm.", "farm delete lq-12"));
        command.Add(_id);
        return command;
    }

    protected override async Task<int> RunAsync(ParseResult parse, CliSession session, CancellationToken cancellationToken)
    {
        var plugin = await session.PluginAsync(cancellationToken).ConfigureAwait(false);
        var jobId = parse.GetValue(_id)!;
        await plugin.DeleteJobAsync(jobId, cancellationToken).ConfigureAwait(false);
        if (session.Json)
        {
            session.WriteJson(new { id = jobId, deleted = true });
        }
        else
        {
            session.Say($"{jobId}: deleted");
        }

        return ExitCodes.Success;
    }
}
