using System.Diagnostics;
using FarmPlugins.TestSupport;
using Xunit;

namespace FarmPlugins.Cli.Tests;

/// <summary>
/// One private farm for every CLI test: FARM_DATA in a temporary folder, this checkout's out/resources on
/// FARM_RESOURCES, LocalQueue with short timings. The variables are process-wide, so the CLI tests share one
/// collection and run one after the other. Every LocalQueue agent is killed by pid at the end.
/// </summary>
public sealed class CliFixture : IDisposable
{
    private readonly TempDir _data = new("farmcli");
    private readonly ProcessTracker _processes = new();

    public CliFixture()
    {
        Repository = FindRepository();
        Resources = Path.Combine(Repository, "out", "resources");
        Set("FARM_RESOURCES", Resources);
        Set("FARM_DATA", _data.Path);
        Set("FARM_HOME", Repository);
        Set("FARM_PLUGIN", null);
        Set("FARM_LOCALQUEUE_HEARTBEATSECONDS", "0.5");
        Set("FARM_LOCALQUEUE_LEASESECONDS", "3");
        Set("FARM_LOCALQUEUE_IDLESECONDS", "20");
        Set("FARM_LOCALQUEUE_POLLMILLISECONDS", "300");
    }

    public string Repository { get; }

    public string Resources { get; }

    public string DataDirectory => _data.Path;

    public Dictionary<string, string?> Environment { get; } = [];

    /// <summary>Runs the CLI in this process.</summary>
    public async Task<CliResult> RunAsync(params string[] args) => await RunAsync(args, CancellationToken.None);

    public async Task<CliResult> RunAsync(string[] args, CancellationToken cancellationToken)
    {
        using var stdout = new StringWriter();
        using var stderr = new StringWriter();
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        var run = FarmCli.RunAsync(args, stdout, stderr, timeout.Token);
        if (await Task.WhenAny(run, Task.Delay(TimeSpan.FromMinutes(3), CancellationToken.None)) != run)
        {
            throw new TimeoutException($"farm {string.Join(' ', args)} did not end within 3 minutes; stderr so far:\n{stderr}");
        }

        return new CliResult(await run, stdout.ToString(), stderr.ToString());
    }

    /// <summary>Runs the CLI as a real process (<c>dotnet farm.dll</c>), killed by pid if it outlives its timeout.</summary>
    public async Task<CliResult> RunProcessAsync(string[] args, TimeSpan? timeout = null, IDictionary<string, string>? environment = null)
    {
        var info = new ProcessStartInfo("dotnet")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            RedirectStandardInput = true,
            WorkingDirectory = _data.Path,
        };
        info.ArgumentList.Add(Path.Combine(AppContext.BaseDirectory, "farm.dll"));
        foreach (var arg in args)
        {
            info.ArgumentList.Add(arg);
        }

        foreach (var (key, value) in environment ?? new Dictionary<string, string>())
        {
            info.Environment[key] = value;
        }

        using var process = _processes.Start(info);
        process.StandardInput.Close();
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        using var cts = new CancellationTokenSource(timeout ?? TimeSpan.FromMinutes(3));
        try
        {
            await process.WaitForExitAsync(cts.Token);
        }
        catch (OperationCanceledException)
        {
            ProcessTracker.Kill(process.Id);
            throw new TimeoutException($"farm {string.Join(' ', args)} did not end in time");
        }

        return new CliResult(process.ExitCode, await stdout, await stderr);
    }

    public IReadOnlyList<int> AgentProcessIds()
    {
        var folder = Path.Combine(_data.Path, "LocalQueue", "agents");
        return Directory.Exists(folder)
            ? [.. Directory.GetFiles(folder, "*.pid").Select(f => int.TryParse(File.ReadAllText(f).Trim(), out var pid) ? pid : 0).Where(p => p > 0)]
            : [];
    }

    public void Dispose()
    {
        foreach (var pid in AgentProcessIds())
        {
            ProcessTracker.Kill(pid);
        }

        _processes.Dispose();
        foreach (var (key, value) in Environment)
        {
            System.Environment.SetEnvironmentVariable(key, value);
        }

        _data.Dispose();
    }

    private void Set(string key, string? value)
    {
        Environment.TryAdd(key, System.Environment.GetEnvironmentVariable(key));
        System.Environment.SetEnvironmentVariable(key, value);
    }

    private static string FindRepository()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            if (File.Exists(Path.Combine(dir.FullName, "FarmPlugins.sln")))
            {
                return dir.FullName;
            }
        }

        throw new InvalidOperationException("The FarmPlugins checkout was not found above " + AppContext.BaseDirectory);
    }
}

public sealed record CliResult(int Code, string Stdout, string Stderr)
{
    public override string ToString() => $"exit {Code}\n--- stdout\n{Stdout}\n--- stderr\n{Stderr}";
}

[CollectionDefinition(Name)]
public sealed class CliCollection : ICollectionFixture<CliFixture>
{
    public const string Name = "farm CLI";
}
