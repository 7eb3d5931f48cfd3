using System.ComponentModel;
using System.Diagnostics;
using System.Globalization;
using System.Text;
using FarmApi;

namespace FarmPlugins.Slurm;

/// <summary>What Slurm says about one element of an array job.</summary>
/// <param name="State">The base state, e.g. <c>PENDING</c>, <c>RUNNING</c>, <c>COMPLETED</c>, <c>CANCELLED</c>.</param>
/// <param name="Reason">Why it is pending or ended, e.g. <c>DependencyNeverSatisfied</c>; empty when none.</param>
/// <param name="Node">The node it runs or ran on, or null.</param>
/// <param name="StartedAt">When it started, or null.</param>
/// <param name="EndedAt">When it ended, or null.</param>
/// <param name="ExitCode">Its exit code when Slurm reports one (sacct), or null.</param>
internal sealed record SlurmElement(string State, string Reason, string? Node, DateTimeOffset? StartedAt, DateTimeOffset? EndedAt, int? ExitCode = null)
{
    /// <summary>Whether Slurm still has work to do for it.</summary>
    public bool IsActive => State is "PENDING" or "RUNNING" or "COMPLETING" or "CONFIGURING" or "SUSPENDED" or "REQUEUED"
        or "REQUEUE_FED" or "REQUEUE_HOLD" or "RESIZING" or "SIGNALING" or "STAGE_OUT" or "STOPPED" or "PREEMPTED" or "RESV_DEL_HOLD";

    /// <summary>The mapping of Slurm's states to the contract's.</summary>
    public JobState MappedState => State switch
    {
        "PENDING" or "PREEMPTED" or "REQUEUED" or "REQUEUE_FED" or "REQUEUE_HOLD" or "RESV_DEL_HOLD" => JobState.Waiting,
        "RUNNING" or "COMPLETING" or "CONFIGURING" or "SUSPENDED" or "STOPPED" or "RESIZING" or "SIGNALING" or "STAGE_OUT" => JobState.Running,
        "COMPLETED" => JobState.Completed,
        "CANCELLED" => Reason.Contains("Dependency", StringComparison.Ordinal) ? JobState.Failed : JobState.Cancelled,
        _ => JobState.Failed, // FAILED, TIMEOUT, NODE_FAIL, OUT_OF_MEMORY, BOOT_FAIL, DEADLINE, and anything new
    };
}

/// <summary>
/// Runs the Slurm commands, always with an argument list (never a shell string), each under a time limit, and turns
/// their failures into the contract's exceptions.
/// </summary>
internal sealed class SlurmCommands(SlurmOptions options, string pluginName)
{
    private const string SqueueFormat = "%F|%K|%T|%r|%N|%S|%e";
    private int _accounting; // 0 unknown, 1 enabled, -1 disabled

    /// <summary>The result of one command.</summary>
    public sealed record Result(int ExitCode, string Output, string Error);

    /// <summary>Runs one Slurm command and returns what it printed, whatever its exit code.</summary>
    public async Task<Result> RunAsync(string command, IReadOnlyList<string> arguments, CancellationToken cancellationToken)
    {
        var executable = options.SlurmBin is null ? command : Path.Combine(options.SlurmBin, command);
        var info = new ProcessStartInfo(executable)
        {
            UseShellExecute = false,
            RedirectStandardInput = true,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            StandardOutputEncoding = Encoding.UTF8,
            StandardErrorEncoding = Encoding.UTF8,
        };
        foreach (var argument in arguments)
        {
            info.ArgumentList.Add(argument);
        }

        if (options.SlurmConf is not null)
        {
            info.Environment["SLURM_CONF"] = options.SlurmConf;
        }

        // The workstation's own Slurm variables (inside an allocation) must not leak into what we submit or ask.
        foreach (var name in new[] { "SLURM_JOB_ID", "SLURM_JOBID", "SLURM_ARRAY_JOB_ID", "SLURM_ARRAY_TASK_ID", "SBATCH_DEPENDENCY", "SBATCH_ARRAY_INX" })
        {
            info.Environment.Remove(name);
        }

        Process process;
        try
        {
            process = Process.Start(info) ?? throw new FarmPluginException($"{command} could not be started.", null, pluginName);
        }
        catch (Win32Exception ex)
        {
            throw new FarmUnavailableException(
                $"The Slurm command '{command}' was not found ({ex.Message}): install the Slurm client (apt-get install slurm-client) or set the Slurm setting SlurmBin.",
                ex, pluginName);
        }

        using (process)
        {
            process.StandardInput.Close();
            var output = process.StandardOutput.ReadToEndAsync(cancellationToken);
            var error = process.StandardError.ReadToEndAsync(cancellationToken);
            using var limit = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
            limit.CancelAfter(options.CommandTimeout);
            try
            {
                await process.WaitForExitAsync(limit.Token).ConfigureAwait(false);
            }
            catch (OperationCanceledException)
            {
                try
                {
                    process.Kill(entireProcessTree: true);
                }
                catch (InvalidOperationException)
                {
                }

                cancellationToken.ThrowIfCancellationRequested();
                throw new FarmUnavailableException(
                    $"{command} did not answer within {options.CommandTimeout.TotalSeconds:0} s: the Slurm controller may be down or overloaded.", null, pluginName);
            }

            return new Result(process.ExitCode, await output.ConfigureAwait(false), await error.ConfigureAwait(false));
        }
    }

    /// <summary>Runs a command that must succeed; a failure becomes the fitting exception.</summary>
    public async Task<string> RunCheckedAsync(string command, IReadOnlyList<string> arguments, CancellationToken cancellationToken)
    {
        var result = await RunAsync(command, arguments, cancellationToken).ConfigureAwait(false);
        if (result.ExitCode != 0)
        {
            throw Failure(command, result);
        }

        return result.Output;
    }

    /// <summary>Submits with sbatch; returns the new job id.</summary>
    public async Task<string> SubmitAsync(IReadOnlyList<string> arguments, CancellationToken cancellationToken)
    {
        var output = await RunCheckedAsync("sbatch", ["--parsable", .. arguments], cancellationToken).ConfigureAwait(false);
        // --parsable prints "<id>" or "<id>;<cluster>".
        var id = output.Trim().Split(';', 2)[0].Trim();
        if (id.Length == 0 || !id.All(char.IsAsciiDigit))
        {
            throw new FarmPluginException($"sbatch printed no job id: '{output.Trim()}'.", null, pluginName);
        }

        return id;
    }

    /// <summary>What squeue (and sacct, where accounting exists) says about every element of the given array jobs.</summary>
    public async Task<Dictionary<(string JobId, int Index), SlurmElement>> QueryAsync(IReadOnlyCollection<string> arrayJobIds,
        CancellationToken cancellationToken)
    {
        var elements = new Dictionary<(string, int), SlurmElement>();
        if (arrayJobIds.Count == 0)
        {
            return elements;
        }

        var result = await RunAsync("squeue", ["-h", "-r", "-t", "all", "-o", SqueueFormat, "-j", string.Join(',', arrayJobIds)], cancellationToken)
            .ConfigureAwait(false);
        if (result.ExitCode != 0 && !result.Error.Contains("Invalid job id", StringComparison.OrdinalIgnoreCase))
        {
            throw Failure("squeue", result);
        }

        foreach (var line in result.Output.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            var fields = line.Split('|');
            if (fields.Length < 7 || !int.TryParse(fields[1], NumberStyles.None, CultureInfo.InvariantCulture, out var index))
            {
                continue;
            }

            var state = fields[2];
            var started = state is "PENDING" ? null : Time(fields[5]);
            elements[(fields[0], index)] = new SlurmElement(state, fields[3] == "None" ? string.Empty : fields[3],
                fields[4].Length == 0 ? null : fields[4], started, Time(fields[6]));
        }

        var missing = arrayJobIds.Where(id => !elements.Keys.Any(k => k.Item1 == id)).ToList();
        if (missing.Count > 0 && _accounting >= 0)
        {
            await QueryAccountingAsync(missing, elements, cancellationToken).ConfigureAwait(false);
        }

        return elements;
    }

    /// <summary>
    /// The exit codes <c>scontrol show job</c> gives for the elements of an array job (<c>ExitCode=code:signal</c>; a
    /// signal is reported as 128 + signal, as a shell would); empty when Slurm no longer knows it.
    /// </summary>
    public async Task<Dictionary<int, int>> ExitCodesAsync(string arrayJobId, CancellationToken cancellationToken)
    {
        var codes = new Dictionary<int, int>();
        var result = await RunAsync("scontrol", ["-o", "show", "job", arrayJobId], cancellationToken).ConfigureAwait(false);
        if (result.ExitCode != 0)
        {
            return codes;
        }

        foreach (var line in result.Output.Split('\n', StringSplitOptions.RemoveEmptyEntries))
        {
            var fields = line.Split(' ', StringSplitOptions.RemoveEmptyEntries)
                .Select(f => f.Split('=', 2)).Where(p => p.Length == 2)
                .GroupBy(p => p[0], StringComparer.Ordinal).ToDictionary(g => g.Key, g => g.First()[1], StringComparer.Ordinal);
            if (fields.TryGetValue("ArrayTaskId", out var task) && int.TryParse(task, NumberStyles.None, CultureInfo.InvariantCulture, out var index)
                && fields.TryGetValue("ExitCode", out var exit) && exit.Split(':') is [var code, var signal]
                && int.TryParse(code, NumberStyles.None, CultureInfo.InvariantCulture, out var status)
                && int.TryParse(signal, NumberStyles.None, CultureInfo.InvariantCulture, out var number))
            {
                codes[index] = number != 0 ? 128 + number : status;
            }
        }

        return codes;
    }

    /// <summary>Cancels jobs (whole arrays or elements such as <c>12_3</c>); ids Slurm no longer knows are ignored.</summary>
    public async Task CancelAsync(IReadOnlyCollection<string> ids, CancellationToken cancellationToken)
    {
        if (ids.Count == 0)
        {
            return;
        }

        var result = await RunAsync("scancel", [.. ids], cancellationToken).ConfigureAwait(false);
        if (result.ExitCode != 0 && !IsAlreadyGone(result.Error))
        {
            throw Failure("scancel", result);
        }
    }

    /// <summary>The cluster's MaxArraySize (the largest array index is one less).</summary>
    public async Task<int> MaxArraySizeAsync(CancellationToken cancellationToken)
    {
        var output = await RunCheckedAsync("scontrol", ["show", "config"], cancellationToken).ConfigureAwait(false);
        foreach (var line in output.Split('\n'))
        {
            var parts = line.Split('=', 2, StringSplitOptions.TrimEntries);
            if (parts.Length == 2 && parts[0] == "MaxArraySize"
                && int.TryParse(parts[1], NumberStyles.None, CultureInfo.InvariantCulture, out var size))
            {
                return size;
            }
        }

        return 1001; // Slurm's default
    }

    /// <summary>The exception for a failed command, by what it printed.</summary>
    public FarmPluginException Failure(string command, Result result)
    {
        var text = (result.Error.Trim().Length > 0 ? result.Error : result.Output).Trim();
        if (text.Length > 2000)
        {
            text = text[..2000] + "…";
        }

        var message = $"{command} failed (exit {result.ExitCode}): {text}";
        if (ContainsAny(text, "Unable to contact slurm controller", "Socket timed out", "Connection refused", "Zero Bytes were transmitted",
            "Communication connection failure", "Unable to establish", "Transport endpoint"))
        {
            return new FarmUnavailableException(message, null, pluginName);
        }

        if (ContainsAny(text, "munge", "Invalid authentication credential", "Authentication failure", "Access/permission denied", "Protocol authentication error"))
        {
            return new FarmAuthenticationException(message, null, pluginName);
        }

        if (ContainsAny(text, "MaxSubmit", "QOSMax", "AssocMax", "accounting/QOS policy", "Job violates", "MaxJobs"))
        {
            return new FarmQuotaException(message, null, pluginName);
        }

        return new FarmPluginException(message, null, pluginName);
    }

    private async Task QueryAccountingAsync(List<string> ids, Dictionary<(string, int), SlurmElement> elements, CancellationToken cancellationToken)
    {
        var result = await RunAsync("sacct", ["-n", "-P", "-X", "-o", "JobID,State,ExitCode,NodeList,Start,End", "-j", string.Join(',', ids)],
            cancellationToken).ConfigureAwait(false);
        // Without slurmdbd, sacct says accounting is disabled and still exits 0.
        if (ContainsAny(result.Output + result.Error, "accounting storage is disabled", "AccountingStorageType", "not running a supported accounting_storage"))
        {
            _accounting = -1;
            return;
        }

        if (result.ExitCode != 0)
        {
            return;
        }

        _accounting = 1;
        foreach (var line in result.Output.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            var fields = line.Split('|');
            var id = fields[0].Split('_', 2);
            if (fields.Length < 6 || id.Length != 2 || !int.TryParse(id[1], NumberStyles.None, CultureInfo.InvariantCulture, out var index))
            {
                continue;
            }

            var state = fields[1].Split(' ', 2)[0];
            int? exit = int.TryParse(fields[2].Split(':', 2)[0], NumberStyles.None, CultureInfo.InvariantCulture, out var code) ? code : null;
            var reason = fields[1].Contains("Dependency", StringComparison.Ordinal) ? "DependencyNeverSatisfied" : string.Empty;
            elements.TryAdd((id[0], index), new SlurmElement(state, reason, fields[3] is "" or "None assigned" ? null : fields[3],
                Time(fields[4]), Time(fields[5]), exit));
        }
    }

    private static bool IsAlreadyGone(string error) =>
        error.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
            .All(line => ContainsAny(line, "already completing or completed", "Invalid job id", "Job/step already", "job already completed"));

    private static bool ContainsAny(string text, params string[] needles) =>
        needles.Any(n => text.Contains(n, StringComparison.OrdinalIgnoreCase));

    private static DateTimeOffset? Time(string text) =>
        DateTime.TryParseExact(text, "yyyy-MM-ddTHH:mm:ss", CultureInfo.InvariantCulture, DateTimeStyles.AssumeLocal, out var time)
            ? new DateTimeOffset(time)
            : null;
}
