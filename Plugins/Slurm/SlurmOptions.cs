using System.Globalization;
using FarmApi;

namespace FarmPlugins.Slurm;

/// <summary>The Slurm adapter's settings, read and validated once at initialization.</summary>
internal sealed class SlurmOptions
{
    /// <summary>The settings this adapter reads, for <c>farm config</c> and the manager.</summary>
    public static IReadOnlyList<SettingDescriptor> Descriptors { get; } =
    [
        new("SharedRoot", "A folder every node of the cluster sees at the same path (or at NodeSharedRoot): job folders live there. Required."),
        new("NodeSharedRoot", "SharedRoot as the nodes see it, when they mount it elsewhere.", false, null),
        new("Partition", "The partition (sbatch --partition); the cluster's default when not set.", false, null),
        new("Account", "The account to charge (sbatch --account).", false, null),
        new("Qos", "The quality of service (sbatch --qos).", false, null),
        new("TimeLimit", "The wall-clock limit of one task (sbatch --time), e.g. 30, 2:00:00 or 1-00:00:00.", false, null),
        new("CpusPerTask", "CPUs per task (sbatch --cpus-per-task).", false, "1"),
        new("MemPerTask", "Memory per task (sbatch --mem), e.g. 4G; the cluster's default when not set.", false, null),
        new("MaxConcurrent", "At most this many tasks of one array run at once (sbatch --array=...%N); 0: no limit.", false, "0"),
        new("ExtraArgs", "More sbatch arguments, separated by spaces; each word is passed as one argument, never through a shell.", false, null),
        new("SlurmBin", "The folder holding sbatch, squeue, scontrol, scancel, sinfo and sacct; found on PATH when not set.", false, null),
        new("SlurmConf", "The slurm.conf the commands use (SLURM_CONF); the system's when not set.", false, null),
        new("CommandTimeoutSeconds", "The longest one Slurm command may take.", false, "60"),
        new("StopWaitSeconds", "How long StopJobAsync waits for Slurm to end the running tasks.", false, "20"),
        new("PovRay", "The POV-Ray executable as the nodes see it; this machine's when not set.", false, null),
        new("Blender", "The Blender executable as the nodes see it; this machine's when not set.", false, null),
        new("FarmTools", "The farm-tools executable as the nodes see it (on a shared filesystem); found next to the plug-in when not set.", false, null),
    ];

    public required string SharedRoot { get; init; }

    public required string NodeSharedRoot { get; init; }

    public string? Partition { get; init; }

    public string? Account { get; init; }

    public string? Qos { get; init; }

    public string? TimeLimit { get; init; }

    public int CpusPerTask { get; init; } = 1;

    public string? MemPerTask { get; init; }

    public int MaxConcurrent { get; init; }

    public IReadOnlyList<string> ExtraArgs { get; init; } = [];

    public string? SlurmBin { get; init; }

    public string? SlurmConf { get; init; }

    public TimeSpan CommandTimeout { get; init; } = TimeSpan.FromSeconds(60);

    public TimeSpan StopWait { get; init; } = TimeSpan.FromSeconds(20);

    /// <summary>Reads and checks every setting; one exception names every bad one.</summary>
    public static SlurmOptions Read(FarmPluginContext context)
    {
        var errors = new List<string>();
        var sharedRoot = context.GetSetting("SharedRoot");
        if (sharedRoot is null)
        {
            errors.Add("SharedRoot is required: a folder every node of the cluster sees");
        }
        else if (!Path.IsPathFullyQualified(sharedRoot))
        {
            errors.Add($"SharedRoot must be an absolute path, not '{sharedRoot}'");
        }

        var nodeRoot = context.GetSetting("NodeSharedRoot");
        if (nodeRoot is not null && !nodeRoot.StartsWith('/'))
        {
            errors.Add($"NodeSharedRoot must be an absolute path, not '{nodeRoot}'");
        }

        var options = new SlurmOptions
        {
            SharedRoot = sharedRoot is null ? string.Empty : Path.TrimEndingDirectorySeparator(Path.GetFullPath(sharedRoot)),
            NodeSharedRoot = (nodeRoot ?? sharedRoot ?? string.Empty).TrimEnd('/') is { Length: > 0 } n ? n : "/",
            Partition = Word(context, "Partition", errors),
            Account = Word(context, "Account", errors),
            Qos = Word(context, "Qos", errors),
            TimeLimit = TimeLimitSetting(context, errors),
            CpusPerTask = Int(context, "CpusPerTask", 1, 1, 4096, errors),
            MemPerTask = Word(context, "MemPerTask", errors),
            MaxConcurrent = Int(context, "MaxConcurrent", 0, 0, 1_000_000, errors),
            ExtraArgs = (context.GetSetting("ExtraArgs") ?? string.Empty)
                .Split([' ', '\t', '\n', '\r'], StringSplitOptions.RemoveEmptyEntries),
            SlurmBin = context.GetSetting("SlurmBin"),
            SlurmConf = context.GetSetting("SlurmConf"),
            CommandTimeout = Seconds(context, "CommandTimeoutSeconds", 60, errors),
            StopWait = Seconds(context, "StopWaitSeconds", 20, errors),
        };

        if (options.SlurmBin is not null && !Directory.Exists(options.SlurmBin))
        {
            errors.Add($"SlurmBin '{options.SlurmBin}' is not a folder");
        }

        if (options.SlurmConf is not null && !File.Exists(options.SlurmConf))
        {
            errors.Add($"SlurmConf '{options.SlurmConf}' does not exist");
        }

        if (errors.Count > 0)
        {
            throw new FarmPluginException($"Slurm settings are invalid: {string.Join("; ", errors)}.", null, context.PluginName);
        }

        return options;
    }

    private static string? Word(FarmPluginContext context, string name, List<string> errors)
    {
        var value = context.GetSetting(name)?.Trim();
        if (value is { Length: > 0 } && value.Any(c => char.IsWhiteSpace(c) || char.IsControl(c)))
        {
            errors.Add($"{name} must be one word, not '{value}'");
        }

        return string.IsNullOrEmpty(value) ? null : value;
    }

    private static string? TimeLimitSetting(FarmPluginContext context, List<string> errors)
    {
        var value = Word(context, "TimeLimit", errors);
        // Slurm's forms: minutes, MM:SS, HH:MM:SS, D-HH, D-HH:MM, D-HH:MM:SS, or UNLIMITED.
        if (value is not null && !value.Equals("UNLIMITED", StringComparison.OrdinalIgnoreCase)
            && !System.Text.RegularExpressions.Regex.IsMatch(value, @"^(\d+-)?\d+(:\d+){0,2}$"))
        {
            errors.Add($"TimeLimit '{value}' is not a Slurm time (minutes, HH:MM:SS or D-HH:MM:SS)");
        }

        return value;
    }

    private static int Int(FarmPluginContext context, string name, int fallback, int min, int max, List<string> errors)
    {
        try
        {
            var value = context.GetInt32Setting(name, fallback);
            if (value < min || value > max)
            {
                errors.Add($"{name} must be between {min} and {max}, not {value}");
            }

            return value;
        }
        catch (FarmPluginException ex)
        {
            errors.Add(ex.Message);
            return fallback;
        }
    }

    private static TimeSpan Seconds(FarmPluginContext context, string name, double fallback, List<string> errors)
    {
        try
        {
            var value = context.GetDoubleSetting(name, fallback);
            if (value <= 0)
            {
                errors.Add($"{name} must be positive, not {value.ToString(CultureInfo.InvariantCulture)}");
                return TimeSpan.FromSeconds(fallback);
            }

            return TimeSpan.FromSeconds(value);
        }
        catch (FarmPluginException ex)
        {
            errors.Add(ex.Message);
            return TimeSpan.FromSeconds(fallback);
        }
    }
}
