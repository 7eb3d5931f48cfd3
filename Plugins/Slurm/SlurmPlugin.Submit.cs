using System.Text;
using FarmApi;
using FarmApi.TaskScripts;

namespace FarmPlugins.Slurm;

public sealed partial class SlurmPlugin
{
    // Request settings a job may override, and the sbatch option each becomes.
    // sbatch processes run at once while submitting a job of many arrays (the controller serializes them anyway).
    private const int SubmitConcurrency = 4;

    private static readonly (string Setting, string Option)[] JobSettings =
    [
        ("Partition", "--partition"), ("Account", "--account"), ("Qos", "--qos"), ("TimeLimit", "--time"),
        ("CpusPerTask", "--cpus-per-task"), ("MemPerTask", "--mem"), ("MaxConcurrent", "%"),
    ];

    /// <inheritdoc />
    protected override async Task<string> SubmitJobCoreAsync(JobRequest request, CancellationToken cancellationToken)
    {
        var folder = CheckTemporaryFolder(request.TemporaryFolder, request.Context.Id);
        var options = SbatchOptions(request.Settings);
        using (await JobRecords.LockAsync(folder, cancellationToken).ConfigureAwait(false))
        {
            var existing = JobRecords.Read(folder);
            if (existing is not null)
            {
                // Idempotent per render context; finishes a submission an earlier process was interrupted in.
                await SubmitArraysAsync(folder, existing, existing.Runs.Max(r => r.Number), adopt: true, cancellationToken).ConfigureAwait(false);
                return existing.JobId;
            }

            var record = new JobRecord
            {
                JobId = folder.JobId,
                Name = request.Name,
                RenderContextId = request.Context.Id,
                Submitter = request.Submitter ?? $"{Environment.UserName}@{Environment.MachineName}",
                SubmittedAt = TimeProvider.GetUtcNow(),
                Labels = new Dictionary<string, string>(request.Labels, StringComparer.Ordinal),
                Environment = new Dictionary<string, string>(request.Environment, StringComparer.Ordinal),
                Priority = request.Priority,
                MaxAttempts = request.MaxAttempts,
                MaxArraySize = await _slurm.MaxArraySizeAsync(cancellationToken).ConfigureAwait(false),
                Tasks = request.Tasks.Select(t => new TaskRecord { Spec = t }).ToList(),
                SbatchOptions = options,
            };
            var run = new RunRecord
            {
                Number = 1,
                SubmittedAt = record.SubmittedAt,
                Arrays = ArrayPlanner.Plan(record, Enumerable.Range(0, record.Tasks.Count).ToList()),
            };
            record.Runs.Add(run);
            WriteRunScripts(folder, record, run);
            // The intent is durable before anything reaches Slurm; each array id is recorded as soon as sbatch gives it.
            JobRecords.Write(folder, record);
            try
            {
                await SubmitArraysAsync(folder, record, run.Number, adopt: false, cancellationToken).ConfigureAwait(false);
            }
            catch (Exception ex)
            {
                await RollBackAsync(record, run, ex).ConfigureAwait(false);
                File.Delete(folder.RecordFile);
                throw;
            }

            return record.JobId;
        }
    }

    /// <inheritdoc />
    protected override async Task RestartJobCoreAsync(string jobId, IReadOnlyCollection<string>? taskIds, CancellationToken cancellationToken)
    {
        var folder = ExistingFolderOf(jobId);
        using (await JobRecords.LockAsync(folder, cancellationToken).ConfigureAwait(false))
        {
            var record = JobRecords.Read(folder) ?? throw new JobNotFoundException(jobId, Name);
            var before = System.Text.Json.JsonSerializer.Serialize(record, JobRecords.Json);
            var look = new JobLook(folder, record);
            var view = Resolve(look, await QuerySlurmAsync([look], cancellationToken).ConfigureAwait(false));
            var selected = new SortedSet<int>();
            if (taskIds is not null)
            {
                foreach (var taskId in taskIds)
                {
                    var task = view.Tasks.FirstOrDefault(t => t.Task.Spec.Id == taskId)
                        ?? throw new ArgumentException($"Job {jobId} has no task '{taskId}'.", nameof(taskIds));
                    if (!task.State.IsTerminal())
                    {
                        throw new FarmPluginException($"Task '{taskId}' of job {jobId} is {task.State}; stop the job before restarting it.", null, Name);
                    }

                    selected.Add(task.Ordinal);
                }
            }
            else
            {
                selected.UnionWith(view.Tasks.Where(t => t.State is JobState.Failed or JobState.Cancelled).Select(t => t.Ordinal));
            }

            // Dependents that did not complete (they failed or were cancelled with it) run again too, or they never would.
            for (var grew = true; grew;)
            {
                grew = false;
                foreach (var task in view.Tasks.Where(t => !selected.Contains(t.Ordinal) && t.State is JobState.Failed or JobState.Cancelled))
                {
                    if ((task.Task.Spec.DependsOn ?? []).Any(d => selected.Contains(view.Tasks.First(u => u.Task.Spec.Id == d).Ordinal)))
                    {
                        selected.Add(task.Ordinal);
                        grew = true;
                    }
                }
            }

            record.StoppedAt = null;
            if (selected.Count == 0)
            {
                JobRecords.Write(folder, record);
                return;
            }

            var run = new RunRecord { Number = record.Runs.Max(r => r.Number) + 1, SubmittedAt = TimeProvider.GetUtcNow() };
            foreach (var ordinal in selected)
            {
                var task = record.Tasks[ordinal];
                task.PriorAttempts = view.Tasks[ordinal].Attempts;
                task.Run = run.Number;
                task.Final = null;
            }

            run.Arrays = ArrayPlanner.Plan(record, selected);
            record.Runs.Add(run);
            WriteRunScripts(folder, record, run);
            JobRecords.Write(folder, record);
            try
            {
                await SubmitArraysAsync(folder, record, run.Number, adopt: false, cancellationToken).ConfigureAwait(false);
            }
            catch (Exception ex)
            {
                await RollBackAsync(record, run, ex).ConfigureAwait(false);
                await File.WriteAllTextAsync(folder.RecordFile + ".restore", before, CancellationToken.None).ConfigureAwait(false);
                File.Move(folder.RecordFile + ".restore", folder.RecordFile, overwrite: true);
                throw;
            }

            Log.Restarted(Logger, jobId, run.Number, selected.Count);
        }
    }

    /// <summary>
    /// Submits the arrays of a run that have no Slurm id yet: several sbatch at once, each array only after those it
    /// waits for; the record is rewritten at most every half second (an array submitted but not yet written down is
    /// found again by its comment when the submission is resumed).
    /// </summary>
    private async Task SubmitArraysAsync(JobFolder folder, JobRecord record, int runNumber, bool adopt, CancellationToken cancellationToken)
    {
        var run = record.Run(runNumber);
        var arrayOf = new Dictionary<int, ArrayRecord>();
        foreach (var array in run.Arrays)
        {
            foreach (var ordinal in array.Ordinals)
            {
                arrayOf[ordinal] = array;
            }
        }

        var submitted = adopt && run.Arrays.Any(a => a.SlurmJobId is null)
            ? await FindByCommentAsync(record.JobId, cancellationToken).ConfigureAwait(false)
            : [];
        var gate = new object();
        var inFlight = new Dictionary<ArrayRecord, Task>();
        var lastWrite = System.Diagnostics.Stopwatch.StartNew();
        using var slots = new SemaphoreSlim(SubmitConcurrency);
        using var failed = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        void WriteRecord()
        {
            lock (gate)
            {
                JobRecords.Write(folder, record);
            }

            lastWrite.Restart();
        }

        try
        {
            foreach (var array in run.Arrays.Where(a => a.SlurmJobId is null))
            {
                var comment = Comment(record, run, array);
                if (submitted.TryGetValue(comment, out var found))
                {
                    array.SlurmJobId = found;
                    Log.ArrayAdopted(Logger, record.JobId, run.Number, array.Key, found);
                    continue;
                }

                var waitsFor = array.DependsOn.Select(o => arrayOf[o]).Distinct().Where(inFlight.ContainsKey).Select(a => inFlight[a]).ToList();
                await Task.WhenAll(waitsFor).ConfigureAwait(false);
                await slots.WaitAsync(failed.Token).ConfigureAwait(false);
                List<string> arguments;
                lock (gate)
                {
                    arguments = SbatchArguments(folder, record, run, array, comment);
                }

                inFlight[array] = Task.Run(async () =>
                {
                    try
                    {
                        var id = await _slurm.SubmitAsync(arguments, failed.Token).ConfigureAwait(false);
                        lock (gate)
                        {
                            array.SlurmJobId = id;
                        }

                        Log.ArraySubmitted(Logger, record.JobId, run.Number, array.Key, id, array.Ordinals.Count);
                    }
                    catch
                    {
                        await failed.CancelAsync().ConfigureAwait(false);
                        throw;
                    }
                    finally
                    {
                        slots.Release();
                    }
                }, CancellationToken.None);
                if (lastWrite.Elapsed > TimeSpan.FromMilliseconds(500))
                {
                    WriteRecord();
                }
            }
        }
        catch (Exception ex) when (failed.IsCancellationRequested && !cancellationToken.IsCancellationRequested
            && (ex is OperationCanceledException || inFlight.Values.Any(t => t.IsFaulted)))
        {
            // An sbatch failed: stop starting others; its own error is reported below.
        }
        finally
        {
            // Every sbatch started is waited for, so a rollback sees every id Slurm gave.
            await Task.WhenAll(inFlight.Values).ContinueWith(_ => { }, CancellationToken.None, TaskContinuationOptions.None, TaskScheduler.Default)
                .ConfigureAwait(false);
        }

        var failures = inFlight.Values.Where(t => t.IsFaulted).Select(t => t.Exception!.InnerException!).ToList();
        WriteRecord();
        if (failures.Count > 0)
        {
            System.Runtime.ExceptionServices.ExceptionDispatchInfo.Capture(failures.FirstOrDefault(e => e is not OperationCanceledException) ?? failures[0]).Throw();
        }
    }

    private async Task RollBackAsync(JobRecord record, RunRecord run, Exception error)
    {
        var submitted = run.Arrays.Where(a => a.SlurmJobId is not null).Select(a => a.SlurmJobId!).ToList();
        try
        {
            await _slurm.CancelAsync(submitted, CancellationToken.None).ConfigureAwait(false);
        }
        catch (FarmPluginException)
        {
            // The submission failed anyway; the error that made it fail is the one to report.
        }

        Log.SubmissionRolledBack(Logger, record.JobId, submitted.Count, error.Message);
    }

    private async Task<Dictionary<string, string>> FindByCommentAsync(string jobId, CancellationToken cancellationToken)
    {
        var result = await _slurm.RunAsync("squeue", ["-h", "-t", "all", "-o", "%F|%k"], cancellationToken).ConfigureAwait(false);
        if (result.ExitCode != 0)
        {
            throw _slurm.Failure("squeue", result);
        }

        var found = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var line in result.Output.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            var parts = line.Split('|', 2);
            if (parts.Length == 2 && parts[1].StartsWith("farm:" + jobId + ":", StringComparison.Ordinal))
            {
                found.TryAdd(parts[1], parts[0]);
            }
        }

        return found;
    }

    private static string Comment(JobRecord record, RunRecord run, ArrayRecord array) => $"farm:{record.JobId}:r{Text(run.Number)}:{array.Key}";

    private List<string> SbatchArguments(JobFolder folder, JobRecord record, RunRecord run, ArrayRecord array, string comment)
    {
        var size = record.MaxArraySize;
        var indices = ArrayPlanner.IndexList(array.Ordinals.Select(o => o - (array.Chunk * size)));
        var throttle = record.SbatchOptions.FirstOrDefault(o => o.StartsWith('%'));
        var logs = folder.ToNode(Path.Combine(folder.Logs, JobFolder.LogName(array.Chunk, "%a")));
        var arguments = new List<string>
        {
            "--array=" + indices + (throttle ?? string.Empty),
            "--job-name=" + SlurmJobName(record.Name),
            "--chdir=" + folder.ToNode(folder.Root),
            "--output=" + logs,
            "--error=" + logs,
            "--open-mode=append",
            "--comment=" + comment,
            "--kill-on-invalid-dep=yes",
        };
        if (ArrayPlanner.Dependency(run, array, size) is { } dependency)
        {
            arguments.Add("--dependency=" + dependency);
        }

        // Above 50 would need a negative nice, which only Slurm operators may set.
        if (record.Priority < 50)
        {
            arguments.Add("--nice=" + Text((50 - record.Priority) * 20));
        }

        arguments.AddRange(record.SbatchOptions.Where(o => !o.StartsWith('%')));
        arguments.AddRange(_options.ExtraArgs);
        arguments.Add(folder.ToNode(Path.Combine(folder.RunFolder(run.Number), "batch.sh")));
        arguments.Add(Text(array.Chunk * size));
        return arguments;
    }

    /// <summary>The sbatch options of a job: the adapter's settings, overridden by the request's.</summary>
    private List<string> SbatchOptions(IReadOnlyDictionary<string, string> requestSettings)
    {
        string? Pick(string name, string? configured)
        {
            var value = requestSettings.FirstOrDefault(p => string.Equals(p.Key, name, StringComparison.OrdinalIgnoreCase)).Value ?? configured;
            if (value is not null && (value.Length == 0 || value.Any(c => char.IsWhiteSpace(c) || char.IsControl(c))))
            {
                throw new ArgumentException($"Settings[{name}] must be one word, not '{value}'.", nameof(requestSettings));
            }

            return value;
        }

        var options = new List<string>();
        foreach (var (setting, option) in JobSettings)
        {
            var configured = setting switch
            {
                "Partition" => _options.Partition,
                "Account" => _options.Account,
                "Qos" => _options.Qos,
                "TimeLimit" => _options.TimeLimit,
                "CpusPerTask" => Text(_options.CpusPerTask),
                "MemPerTask" => _options.MemPerTask,
                _ => _options.MaxConcurrent > 0 ? Text(_options.MaxConcurrent) : null,
            };
            var value = Pick(setting, configured);
            if (value is null)
            {
                continue;
            }

            if (setting is "CpusPerTask" or "MaxConcurrent" && (!int.TryParse(value, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out var number) || number < 1))
            {
                if (setting == "MaxConcurrent" && value == "0")
                {
                    continue;
                }

                throw new ArgumentException($"Settings[{setting}] must be a positive whole number, not '{value}'.", nameof(requestSettings));
            }

            options.Add(option == "%" ? "%" + value : option + "=" + value);
        }

        return options;
    }

    private void WriteRunScripts(JobFolder folder, JobRecord record, RunRecord run)
    {
        var ordinals = run.Arrays.SelectMany(a => a.Ordinals).Order().ToList();
        var statusRelative = Path.GetRelativePath(folder.Root, folder.StatusFolder(run.Number)).Replace('\\', '/');
        var tasks = TaskScriptWriter.Write(
            ordinals.Select(o => new TaskScriptEntry(o, record.Tasks[o].Spec)).ToList(),
            new TaskScriptOptions
            {
                IndexVariable = TaskIndexVariable,
                JobFolder = folder.ToNode(folder.Root),
                Environment = record.Environment,
                StatusFolder = statusRelative,
            });
        var runFolder = folder.RunFolder(run.Number);
        Directory.CreateDirectory(folder.StatusFolder(run.Number));
        Directory.CreateDirectory(folder.Logs);
        var taskScript = Path.Combine(runFolder, "tasks.sh");
        var batchScript = Path.Combine(runFolder, "batch.sh");
        File.WriteAllText(taskScript, tasks, new UTF8Encoding(false));
        File.WriteAllText(batchScript, ArrayPlanner.BatchScript(folder.ToNode(folder.StatusFolder(run.Number)), folder.ToNode(taskScript), record.MaxAttempts),
            new UTF8Encoding(false));
        if (!OperatingSystem.IsWindows())
        {
            var executable = UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute | UnixFileMode.GroupRead
                | UnixFileMode.GroupExecute | UnixFileMode.OtherRead | UnixFileMode.OtherExecute;
            File.SetUnixFileMode(taskScript, executable);
            File.SetUnixFileMode(batchScript, executable);
        }
    }

    /// <summary>The name Slurm shows: the job's name without control characters (the record keeps it as given).</summary>
    private static string SlurmJobName(string name)
    {
        var cleaned = new string(name.Select(c => char.IsControl(c) ? ' ' : c).ToArray()).Trim();
        if (cleaned.Length > 200)
        {
            cleaned = cleaned[..200];
        }

        return cleaned.Length == 0 ? "farm-job" : cleaned;
    }
}
