using System.Globalization;

namespace ReferenceFarm.Agent;

/// <summary>The agent's settings, from its command line.</summary>
public sealed class AgentOptions
{
    /// <summary>The server's URL.</summary>
    public Uri Server { get; set; } = new("http://127.0.0.1:50051");

    /// <summary>The agent token (read from <c>--token-file</c> or <c>FARM_AGENT_TOKEN</c>, never from the command line).</summary>
    public string Token { get; set; } = string.Empty;

    /// <summary>The hosts this node runs; detected when not given.</summary>
    public IReadOnlyList<string> Hosts { get; set; } = [];

    /// <summary>The work folder: blob cache and job folders.</summary>
    public string WorkDirectory { get; set; } = Path.Combine(Path.GetTempPath(), "reference-farm-agent");

    /// <summary>The agent's name: its identity for leases and blocklists.</summary>
    public string Name { get; set; } = Environment.MachineName;

    /// <summary>How many tasks run at once.</summary>
    public int Slots { get; set; } = 1;

    /// <summary>While its tasks are short, how many more tasks than slots the agent leases ahead (reports then go in batches);
    /// 0 leases only for free slots.</summary>
    public int Prefetch { get; set; } = 8;

    /// <summary>The heartbeat interval.</summary>
    public TimeSpan Heartbeat { get; set; } = TimeSpan.FromSeconds(5);

    /// <summary>How long one lease call waits on the server for work.</summary>
    public TimeSpan Poll { get; set; } = TimeSpan.FromSeconds(20);

    /// <summary>On SIGTERM, how long running tasks may finish before they are killed and handed back.</summary>
    public TimeSpan DrainGrace { get; set; } = TimeSpan.FromSeconds(30);

    /// <summary>The first wait after a failed call to the server; it doubles up to <see cref="MaxBackoff"/>.</summary>
    public TimeSpan Backoff { get; set; } = TimeSpan.FromMilliseconds(200);

    /// <summary>The longest wait between retries.</summary>
    public TimeSpan MaxBackoff { get; set; } = TimeSpan.FromSeconds(5);

    /// <summary>How often task output is sent while the task runs.</summary>
    public TimeSpan LogFlush { get; set; } = TimeSpan.FromMilliseconds(250);

    /// <summary>Job folders untouched this long are removed (the blob cache is kept).</summary>
    public TimeSpan KeepJobs { get; set; } = TimeSpan.FromHours(24);

    /// <summary>A PEM file with the server's CA certificate (for https).</summary>
    public string? CaCertificate { get; set; }

    /// <summary>Explicit executables per host (<c>--host-path povray=/opt/povray/bin/povray</c>).</summary>
    public Dictionary<string, string> HostPaths { get; } = new(StringComparer.Ordinal);

    /// <summary>The usage text.</summary>
    public const string Usage = """
        usage: ReferenceFarm.Agent --server URL (--token-file FILE | env FARM_AGENT_TOKEN) [--hosts povray,blender,farm-tools,command]
                                   [--work DIR] [--name NAME] [--slots N] [--prefetch N] [--heartbeat-ms N] [--poll-ms N] [--drain-grace-ms N]
                                   [--backoff-ms N] [--max-backoff-ms N] [--log-flush-ms N] [--keep-jobs-ms N] [--ca-cert FILE]
                                   [--host-path HOST=PATH]...
        """;

    /// <summary>Parses the command line (an optional leading <c>agent</c> verb is allowed).</summary>
    /// <param name="args">The arguments.</param>
    /// <param name="environment">Reads an environment variable.</param>
    /// <returns>The options.</returns>
    /// <exception cref="ArgumentException">An argument is wrong; the message names it.</exception>
    public static AgentOptions Parse(IReadOnlyList<string> args, Func<string, string?> environment)
    {
        ArgumentNullException.ThrowIfNull(args);
        ArgumentNullException.ThrowIfNull(environment);
        var options = new AgentOptions();
        string? tokenFile = null;
        var i = args.Count > 0 && args[0] == "agent" ? 1 : 0;
        for (; i < args.Count; i++)
        {
            var name = args[i];
            if (name == "--token")
            {
                throw new ArgumentException("--token is not accepted: a token on a command line is visible to every user; use --token-file FILE or FARM_AGENT_TOKEN");
            }

            if (i + 1 >= args.Count)
            {
                throw new ArgumentException($"{name} needs a value");
            }

            var value = args[++i];
            switch (name)
            {
                case "--server":
                    options.Server = Uri.TryCreate(value, UriKind.Absolute, out var url) && url.Scheme is "http" or "https"
                        ? url : throw new ArgumentException($"--server must be an http:// or https:// URL, not '{value}'");
                    break;
                case "--token-file":
                    tokenFile = value;
                    break;
                case "--hosts":
                    options.Hosts = value.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
                    break;
                case "--work":
                    options.WorkDirectory = Path.GetFullPath(value);
                    break;
                case "--name":
                    options.Name = value.Length > 0 ? value : throw new ArgumentException("--name must not be empty");
                    break;
                case "--slots":
                    options.Slots = int.TryParse(value, NumberStyles.Integer, CultureInfo.InvariantCulture, out var slots) && slots is >= 1 and <= 256
                        ? slots : throw new ArgumentException($"--slots must be 1 to 256, not '{value}'");
                    break;
                case "--prefetch":
                    options.Prefetch = int.TryParse(value, NumberStyles.Integer, CultureInfo.InvariantCulture, out var prefetch) && prefetch is >= 0 and <= 64
                        ? prefetch : throw new ArgumentException($"--prefetch must be 0 to 64, not '{value}'");
                    break;
                case "--heartbeat-ms":
                    options.Heartbeat = Ms(name, value);
                    break;
                case "--poll-ms":
                    options.Poll = Ms(name, value);
                    break;
                case "--drain-grace-ms":
                    options.DrainGrace = Ms(name, value);
                    break;
                case "--backoff-ms":
                    options.Backoff = Ms(name, value);
                    break;
                case "--max-backoff-ms":
                    options.MaxBackoff = Ms(name, value);
                    break;
                case "--keep-jobs-ms":
                    options.KeepJobs = Ms(name, value);
                    break;
                case "--log-flush-ms":
                    options.LogFlush = Ms(name, value);
                    break;
                case "--ca-cert":
                    options.CaCertificate = File.Exists(value) ? Path.GetFullPath(value) : throw new ArgumentException($"--ca-cert: '{value}' does not exist");
                    break;
                case "--host-path":
                    var eq = value.IndexOf('=', StringComparison.Ordinal);
                    if (eq <= 0)
                    {
                        throw new ArgumentException($"--host-path must be HOST=PATH, not '{value}'");
                    }

                    options.HostPaths[value[..eq]] = value[(eq + 1)..];
                    break;
                default:
                    throw new ArgumentException($"unknown option '{name}'");
            }
        }

        if (tokenFile is not null)
        {
            options.Token = File.Exists(tokenFile) ? File.ReadAllText(tokenFile).Trim() : throw new ArgumentException($"--token-file: '{tokenFile}' does not exist");
        }
        else
        {
            options.Token = environment("FARM_AGENT_TOKEN")?.Trim() ?? string.Empty;
        }

        if (options.Token.Length == 0)
        {
            throw new ArgumentException("no agent token: pass --token-file FILE or set FARM_AGENT_TOKEN");
        }

        if (options.MaxBackoff < options.Backoff)
        {
            options.MaxBackoff = options.Backoff;
        }

        return options;
    }

    private static TimeSpan Ms(string name, string value) =>
        int.TryParse(value, NumberStyles.Integer, CultureInfo.InvariantCulture, out var ms) && ms > 0
            ? TimeSpan.FromMilliseconds(ms)
            : throw new ArgumentException($"{name} must be a positive whole number of milliseconds, not '{value}'");
}
