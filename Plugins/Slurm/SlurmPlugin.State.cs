using FarmApi;

namespace FarmPlugins.Slurm;

/// <summary>One task as the adapter sees it now.</summary>
internal sealed record TaskView(
    int Ordinal, TaskRecord Task, JobState State, int Attempts, string? Node, int? ExitCode,
    DateTimeOffset? StartedAt, DateTimeOffset? CompletedAt, string? ArrayJobId, string? ElementId, TaskFinal? NewFinal);

/// <summary>One job as the adapter sees it now.</summary>
internal sealed record JobView(JobFolder Folder, JobRecord Record, IReadOnlyList<TaskView> Tasks, JobState State);

public sealed partial class SlurmPlugin
{
    private async Task<JobView> ViewAsync(string jobId, CancellationToken cancellationToken)
    {
        var folder = FolderOf(jobId);
        var look = new JobLook(folder, JobRecords.Read(folder) ?? throw new JobNotFoundException(jobId, Name));
        var view = Resolve(look, await QuerySlurmAsync([look], cancellationToken).ConfigureAwait(false));
        return await SettleAsync(folder, view, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>Asks Slurm about every array whose tasks the job folder cannot answer for alone; null when none.</summary>
    private async Task<Dictionary<(string JobId, int Index), SlurmElement>?> QuerySlurmAsync(IEnumerable<JobLook> looks,
        CancellationToken cancellationToken)
    {
        var ids = new HashSet<string>(StringComparer.Ordinal);
        foreach (var look in looks)
        {
            var record = look.Record;
            for (var ordinal = 0; ordinal < record.Tasks.Count; ordinal++)
            {
                var task = record.Tasks[ordinal];
                if (task.Final is null && look.ArrayOf(task.Run, ordinal)?.SlurmJobId is { } id && !ExitIsFinal(look, task, ordinal))
                {
                    ids.Add(id);
                }
            }
        }

        if (ids.Count == 0)
        {
            return null;
        }

        var elements = await _slurm.QueryAsync(ids, cancellationToken).ConfigureAwait(false);

        // Elements Slurm ended without the task script writing an exit code (killed, or never started): their exit
        // code is only in `scontrol show job`, and only for MinJobAge.
        var unexplained = new HashSet<string>(StringComparer.Ordinal);
        foreach (var look in looks)
        {
            for (var ordinal = 0; ordinal < look.Record.Tasks.Count; ordinal++)
            {
                var task = look.Record.Tasks[ordinal];
                var array = look.ArrayOf(task.Run, ordinal);
                if (task.Final is null && array?.SlurmJobId is { } id
                    && elements.TryGetValue((id, ordinal - (array.Chunk * look.Record.MaxArraySize)), out var element)
                    && element is { IsActive: false, ExitCode: null } && element.State != "COMPLETED"
                    && look.Status.ExitNow(task.Run, task.Spec.Id).Code is null)
                {
                    unexplained.Add(id);
                }
            }
        }

        foreach (var id in unexplained)
        {
            foreach (var (index, code) in await _slurm.ExitCodesAsync(id, cancellationToken).ConfigureAwait(false))
            {
                if (elements.TryGetValue((id, index), out var element))
                {
                    elements[(id, index)] = element with { ExitCode = code };
                }
            }
        }

        return elements;
    }

    /// <summary>Whether the exit code file is the task's last word: success, or a failure of its last attempt.</summary>
    private static bool ExitIsFinal(JobLook look, TaskRecord task, int ordinal)
    {
        var exit = look.Status.Exit(task.Run, task.Spec.Id);
        return exit.Code is 0 || (exit.Code is not null && look.Status.Attempt(task.Run, ordinal).Attempts >= look.Record.MaxAttempts);
    }

    /// <summary>
    /// Works out every task's state from, in order: what the adapter decided (stop, a failed dependency), the exit
    /// code the task script wrote, and what Slurm says; then fails the waiting tasks whose dependencies failed.
    /// </summary>
    private JobView Resolve(JobLook look, Dictionary<(string JobId, int Index), SlurmElement>? elements)
    {
        var (folder, record) = (look.Folder, look.Record);
        var now = TimeProvider.GetUtcNow();
        var views = new TaskView[record.Tasks.Count];
        for (var ordinal = 0; ordinal < record.Tasks.Count; ordinal++)
        {
            var task = record.Tasks[ordinal];
            var (attempts, attemptNode) = look.Status.Attempt(task.Run, ordinal);
            var exit = look.Status.Exit(task.Run, task.Spec.Id);
            var started = look.Status.Start(task.Run, task.Spec.Id);
            var array = look.ArrayOf(task.Run, ordinal);
            var index = array is null ? 0 : ordinal - (array.Chunk * record.MaxArraySize);
            var elementId = array?.SlurmJobId is { } arrayId ? arrayId + "_" + Text(index) : null;
            var totalAttempts = task.PriorAttempts + attempts;
            if (task.Final is { } final)
            {
                views[ordinal] = new TaskView(ordinal, task, final.State, totalAttempts, final.Node ?? attemptNode, final.ExitCode ?? exit.Code,
                    final.StartedAt ?? started, final.At, array?.SlurmJobId, elementId, null);
                continue;
            }

            if (array?.SlurmJobId is null)
            {
                // Being submitted (or a submission was interrupted: submitting the same render context again resumes it).
                views[ordinal] = new TaskView(ordinal, task, JobState.Waiting, totalAttempts, null, null, null, null, null, null, null);
                continue;
            }

            SlurmElement? element = null;
            elements?.TryGetValue((array.SlurmJobId, index), out element);
            if (exit.Code is null && element is { IsActive: false })
            {
                // It may have written its exit code after the status folder was listed.
                exit = look.Status.ExitNow(task.Run, task.Spec.Id);
            }

            var exitFinal = exit.Code is 0 || (exit.Code is not null && attempts >= record.MaxAttempts);
            TaskView view;
            if (element is { IsActive: true } && !(exitFinal && element.State != "PENDING"))
            {
                view = new TaskView(ordinal, task, element.MappedState, totalAttempts, element.Node ?? attemptNode, null,
                    element.MappedState == JobState.Running ? started ?? element.StartedAt : null, null, array.SlurmJobId, elementId, null);
            }
            else if (exit.Code is not (null or 0) && element is { MappedState: JobState.Cancelled })
            {
                // Cancelled in Slurm (scancel by someone else): the kill's exit code is not a failure. Kept, as Slurm forgets.
                var ended = element.EndedAt ?? exit.At ?? now;
                var cancelled = new TaskFinal(JobState.Cancelled, exit.Code, $"Slurm: {element.State}", ended, element.Node ?? attemptNode,
                    started ?? element.StartedAt);
                view = new TaskView(ordinal, task, JobState.Cancelled, totalAttempts, cancelled.Node, exit.Code, cancelled.StartedAt, ended,
                    array.SlurmJobId, elementId, cancelled);
            }
            else if (exit.Code is { } code)
            {
                view = new TaskView(ordinal, task, code == 0 ? JobState.Completed : JobState.Failed, totalAttempts, attemptNode ?? element?.Node, code,
                    started ?? element?.StartedAt, exit.At, array.SlurmJobId, elementId, null);
            }
            else if (element is not null)
            {
                // Ended without an exit code file (killed by Slurm, or it never started): keep what only Slurm knows now.
                var state = element.MappedState;
                var reason = element.Reason.Length > 0 ? $"Slurm: {element.State} ({element.Reason})" : $"Slurm: {element.State}";
                var ended = element.EndedAt ?? now;
                view = new TaskView(ordinal, task, state, totalAttempts, element.Node ?? attemptNode, element.ExitCode, started ?? element.StartedAt,
                    ended, array.SlurmJobId, elementId, new TaskFinal(state, element.ExitCode, reason, ended, element.Node ?? attemptNode, started ?? element.StartedAt));
            }
            else if (elements is not null)
            {
                var reason = $"Slurm no longer knows job {elementId} and the task left no exit code";
                view = new TaskView(ordinal, task, JobState.Failed, totalAttempts, attemptNode, null, started, now, array.SlurmJobId, elementId,
                    new TaskFinal(JobState.Failed, null, reason, now, attemptNode, started));
            }
            else
            {
                view = new TaskView(ordinal, task, JobState.Waiting, totalAttempts, attemptNode, null, started, null, array.SlurmJobId, elementId, null);
            }

            views[ordinal] = view;
        }

        // A waiting task whose dependency (of the same run) failed or was cancelled can never run: it has failed.
        var ordinalOf = new Dictionary<string, int>(StringComparer.Ordinal);
        for (var i = 0; i < views.Length; i++)
        {
            ordinalOf[views[i].Task.Spec.Id] = i;
        }

        for (var changed = true; changed;)
        {
            changed = false;
            for (var i = 0; i < views.Length; i++)
            {
                var view = views[i];
                if (view.State != JobState.Waiting || view.Task.Final is not null)
                {
                    continue;
                }

                foreach (var dependency in view.Task.Spec.DependsOn ?? [])
                {
                    var upstream = views[ordinalOf[dependency]];
                    if (upstream.Task.Run == view.Task.Run && upstream.State is JobState.Failed or JobState.Cancelled)
                    {
                        var reason = $"task '{dependency}' it depends on {(upstream.State == JobState.Failed ? "failed" : "was cancelled")}";
                        views[i] = view with
                        {
                            State = JobState.Failed,
                            CompletedAt = now,
                            NewFinal = new TaskFinal(JobState.Failed, null, reason, now),
                        };
                        changed = true;
                        break;
                    }
                }
            }
        }

        return new JobView(folder, record, views, Aggregate(record, views));
    }

    private static JobState Aggregate(JobRecord record, IReadOnlyList<TaskView> tasks)
    {
        if (record.StoppedAt is not null)
        {
            return JobState.Cancelled;
        }

        int Count(JobState state) => tasks.Count(t => t.State == state);
        if (Count(JobState.Waiting) + Count(JobState.Running) == 0)
        {
            return Count(JobState.Completed) == tasks.Count ? JobState.Completed
                : Count(JobState.Failed) > 0 ? JobState.Failed : JobState.Cancelled;
        }

        return Count(JobState.Running) > 0 || Count(JobState.Completed) + Count(JobState.Failed) > 0 ? JobState.Running : JobState.Waiting;
    }

    /// <summary>
    /// Keeps the states only Slurm knew in the record (Slurm forgets finished jobs) and cancels the arrays of tasks
    /// whose dependencies failed, so nothing stays pending forever.
    /// </summary>
    private async Task<JobView> SettleAsync(JobFolder folder, JobView view, CancellationToken cancellationToken)
    {
        var settled = view.Tasks.Where(t => t.NewFinal is not null).ToList();
        if (settled.Count == 0)
        {
            return view;
        }

        using (await JobRecords.LockAsync(folder, cancellationToken).ConfigureAwait(false))
        {
            var record = JobRecords.Read(folder);
            if (record is null)
            {
                return view;
            }

            foreach (var task in settled)
            {
                var current = record.Tasks[task.Ordinal];
                if (current.Run == task.Task.Run && current.Final is null)
                {
                    current.Final = task.NewFinal;
                }
            }

            JobRecords.Write(folder, record);
        }

        var doomed = settled.Where(t => t.NewFinal!.Reason.StartsWith("task '", StringComparison.Ordinal) && t.ElementId is not null)
            .Select(t => t.ElementId!).ToList();
        if (doomed.Count > 0)
        {
            try
            {
                await _slurm.CancelAsync(doomed, cancellationToken).ConfigureAwait(false);
                Log.DependentsCancelled(Logger, view.Record.JobId, string.Join(',', doomed));
            }
            catch (FarmPluginException)
            {
                // sbatch --kill-on-invalid-dep=yes has Slurm cancel them as well; the state is already decided.
            }
        }

        return view;
    }

    private Job ToJob(JobView view)
    {
        var tasks = view.Tasks;
        var record = view.Record;
        var terminal = view.State.IsTerminal();
        var started = tasks.Where(t => t.StartedAt is not null).Select(t => t.StartedAt!.Value).DefaultIfEmpty().Min();
        var completed = terminal
            ? record.StoppedAt ?? tasks.Where(t => t.CompletedAt is not null).Select(t => t.CompletedAt!.Value).DefaultIfEmpty(TimeProvider.GetUtcNow()).Max()
            : (DateTimeOffset?)null;
        var latest = record.Runs.Count == 0 ? null : record.Runs.MaxBy(r => r.Number);
        var properties = new Dictionary<string, string>(StringComparer.Ordinal)
        {
            ["folder"] = view.Folder.Root,
            ["runs"] = Text(record.Runs.Count),
            ["slurmJobIds"] = string.Join(',', latest?.Arrays.Select(a => a.SlurmJobId).Where(id => id is not null) ?? []),
        };
        return new Job(record.JobId, record.Name, view.State,
            new JobProgress(tasks.Count, tasks.Count(t => t.State == JobState.Completed), tasks.Count(t => t.State == JobState.Running),
                tasks.Count(t => t.State == JobState.Failed)),
            record.SubmittedAt, started == default ? null : started, completed, record.RenderContextId, record.Submitter, view.Folder.JobLog,
            record.Labels, properties);
    }
}
