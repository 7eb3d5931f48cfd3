using System.Diagnostics;
using System.Text;
using FarmApi;
using FarmPlugins.TestSupport;
using Microsoft.Extensions.Logging.Abstractions;

namespace FarmPlugins.ReferenceFarm.Tests;

/// <summary>A real ReferenceFarm on 127.0.0.1: a server process and agent processes with short timings.</summary>
public sealed class FarmCluster : IAsyncDisposable
{
    /// <summary>Tasks run in sessions of their own: the ones a killed agent left running are found by its records, and killed.</summary>
    public void KillLeftoverTasks()
    {
        var agents = Temp.Combine("agents");
        if (!Directory.Exists(agents))
        {
            return;
        }

        foreach (var journal in Directory.EnumerateFiles(agents, "journal", SearchOption.AllDirectories).Where(f => f.Contains("/running/", StringComparison.Ordinal)))
        {
            // The agent's journal of running tasks: the last line about a task says whether it still runs, and its process.
            var running = new Dictionary<string, int>(StringComparer.Ordinal);
            foreach (var line in File.ReadLines(journal))
            {
                try
                {
                    using var json = System.Text.Json.JsonDocument.Parse(line);
                    var key = json.RootElement.GetProperty("JobId").GetString() + "/" + json.RootElement.GetProperty("TaskId").GetString();
                    if (json.RootElement.GetProperty("Ended").GetBoolean())
                    {
                        running.Remove(key);
                    }
                    else
                    {
                        running[key] = json.RootElement.GetProperty("Pid").GetInt32();
                    }
                }
                catch (Exception ex) when (ex is System.Text.Json.JsonException or KeyNotFoundException or InvalidOperationException)
                {
                }
            }

            foreach (var pid in running.Values.Where(p => p > 0))
            {
                ProcessTracker.Kill(-pid, 9);
                ProcessTracker.Kill(pid, 9);
            }
        }
    }

    private readonly ProcessTracker _tracker = new();
    private readonly List<ManagedProcess> _processes = [];
    private readonly List<BaseFarmPlugin> _plugins = [];

    public FarmCluster(string? root = null)
    {
        Temp = new TempDir("refarm");
        DataDirectory = Temp.Combine("server");
        Port = FreePort.Get();
    }

    public TempDir Temp { get; }

    public string DataDirectory { get; }

    public int Port { get; }

    public string Address => $"http://127.0.0.1:{Port}";

    public ManagedProcess? Server { get; private set; }

    public string[] ServerTimings { get; set; } = ["--lease-ms", "2500", "--heartbeat-ms", "300", "--lease-check-ms", "200"];

    public string AdminToken => File.ReadAllText(Path.Combine(DataDirectory, "client.token")).Trim();

    public string AgentTokenFile => Path.Combine(DataDirectory, "agent.token");

    public static string RepoRoot
    {
        get
        {
            var dir = AppContext.BaseDirectory;
            while (dir is not null && !File.Exists(Path.Combine(dir, "FarmPlugins.sln")))
            {
                dir = Path.GetDirectoryName(dir);
            }

            return dir ?? throw new InvalidOperationException("FarmPlugins.sln not found above the test folder.");
        }
    }

    public static string Dll(string project)
    {
        var configuration = AppContext.BaseDirectory.Contains($"{Path.DirectorySeparatorChar}Release{Path.DirectorySeparatorChar}", StringComparison.Ordinal)
            ? "Release" : "Debug";
        var path = Path.Combine(RepoRoot, "ReferenceFarm", project, "bin", configuration, "net10.0", $"ReferenceFarm.{project}.dll");
        return File.Exists(path) ? path : throw new FileNotFoundException($"Build ReferenceFarm/{project} first: {path} is missing.");
    }

    public async Task StartServerAsync(params string[] extra)
    {
        string[] args = ["--listen", Address, "--data", DataDirectory, .. ServerTimings, .. extra];
        Server = Start("server", Dll("Server"), args, null);
        await Server.WaitForOutputAsync("ready on", TimeSpan.FromSeconds(60));
    }

    public async Task RestartServerAsync()
    {
        Server?.Kill(9);
        await Task.Delay(100);
        await StartServerAsync();
    }

    public ManagedProcess StartAgent(string name, string? hosts = null, params string[] extra)
    {
        var work = Temp.Combine("agents", name);
        string[] args = ["--server", Address, "--token-file", AgentTokenFile, "--name", name, "--work", work, "--heartbeat-ms", "300",
            "--poll-ms", "1000", "--backoff-ms", "100", "--max-backoff-ms", "400", "--log-flush-ms", "100", .. (hosts is null ? [] : new[] { "--hosts", hosts }), .. extra];
        return Start("agent " + name, Dll("Agent"), args, null);
    }

    public string AgentJobFolder(string agent, string jobId) => Temp.Combine("agents", agent, "jobs", jobId);

    /// <summary>Stops this process too at the end (one a started process launched).</summary>
    public void Track(int pid) => _tracker.Track(pid);

    public ManagedProcess Start(string label, string dll, IEnumerable<string> args, IDictionary<string, string>? environment)
    {
        var info = new ProcessStartInfo("dotnet") { UseShellExecute = false, RedirectStandardOutput = true, RedirectStandardError = true };
        info.ArgumentList.Add(dll);
        foreach (var arg in args)
        {
            info.ArgumentList.Add(arg);
        }

        foreach (var pair in environment ?? new Dictionary<string, string>())
        {
            info.Environment[pair.Key] = pair.Value;
        }

        var process = new ManagedProcess(label, _tracker.Start(info));
        lock (_processes)
        {
            _processes.Add(process);
        }

        return process;
    }

    /// <summary>A new, initialized adapter; <paramref name="track"/>: disposed with the cluster (the conformance kit disposes its own).</summary>
    public async Task<BaseFarmPlugin> CreatePluginAsync(string? token = null, bool track = true, CancellationToken cancellationToken = default)
    {
        var plugin = new ReferenceFarmPlugin();
        await plugin.InitializeAsync(new FarmPluginContext
        {
            PluginName = "ReferenceFarm",
            LoggerFactory = NullLoggerFactory.Instance,
            Settings = new Dictionary<string, string>(StringComparer.OrdinalIgnoreCase) { ["Address"] = Address, ["Token"] = token ?? AdminToken },
            DataDirectory = Temp.Combine("plugin-data"),
        }, cancellationToken);
        if (track)
        {
            lock (_plugins)
            {
                _plugins.Add(plugin);
            }
        }

        return plugin;
    }

    public string Diagnostics()
    {
        var text = new StringBuilder();
        lock (_processes)
        {
            foreach (var process in _processes)
            {
                text.Append("---- ").Append(process.Label).AppendLine().Append(process.Output);
            }
        }

        return text.ToString();
    }

    public async ValueTask DisposeAsync()
    {
        foreach (var plugin in _plugins)
        {
            await plugin.DisposeAsync();
        }

        _tracker.Dispose();
        KillLeftoverTasks();
        if (Environment.GetEnvironmentVariable("REFARM_TEST_KEEP") is { Length: > 0 } keep)
        {
            // Debugging aid: keep the data folders and the processes' output.
            File.WriteAllText(Path.Combine(Temp.Path, "processes.log"), Diagnostics());
            File.AppendAllText(keep, Temp.Path + "\n");
            return;
        }

        Temp.Dispose();
    }
}

/// <summary>A started process whose output is kept (and never blocks it).</summary>
public sealed class ManagedProcess
{
    private readonly StringBuilder _output = new();

    public ManagedProcess(string label, Process process)
    {
        Label = label;
        Process = process;
        process.OutputDataReceived += (_, e) => Append(e.Data);
        process.ErrorDataReceived += (_, e) => Append(e.Data);
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
    }

    public string Label { get; }

    public Process Process { get; }

    public int Pid => Process.Id;

    public string Output
    {
        get
        {
            lock (_output)
            {
                return _output.ToString();
            }
        }
    }

    private void Append(string? line)
    {
        if (line is null)
        {
            return;
        }

        lock (_output)
        {
            _output.AppendLine(line);
        }
    }

    public void Kill(int signal) => ProcessTracker.Kill(Pid, signal);

    public async Task WaitForOutputAsync(string text, TimeSpan timeout)
    {
        await Eventually.WaitAsync(() => Output.Contains(text, StringComparison.Ordinal) || Process.HasExited, timeout, $"'{text}' from {Label}");
        if (!Output.Contains(text, StringComparison.Ordinal))
        {
            throw new InvalidOperationException($"{Label} exited ({Process.ExitCode}) before printing '{text}':\n{Output}");
        }
    }

    public async Task<int> WaitForExitAsync(TimeSpan timeout)
    {
        using var cts = new CancellationTokenSource(timeout);
        await Process.WaitForExitAsync(cts.Token);
        return Process.ExitCode;
    }
}
