using System.Diagnostics;
using System.Globalization;
using System.Text;
using FarmPlugins.TestSupport;

namespace FarmPlugins.Slurm.Tests;

/// <summary>How the private cluster is sized.</summary>
public sealed record SlurmClusterOptions
{
    /// <summary>CPUs slurmd announces (one task per CPU); more than the machine has is allowed (config_overrides).</summary>
    public int Cpus { get; init; } = Environment.ProcessorCount;

    /// <summary>The cluster's MaxArraySize: array indices run from 0 to this minus one.</summary>
    public int MaxArraySize { get; init; } = 1001;
}

/// <summary>
/// A private single-node Slurm cluster on localhost (Debian's slurm-wlm 22.05 with munge): its own slurm.conf, munge
/// key and socket in a temporary folder, munged, slurmctld and slurmd in the foreground on free ports, each stopped by
/// its process id at the end. Nothing is written under /etc or /var.
/// </summary>
public sealed class SlurmCluster : IAsyncDisposable
{
    private readonly TempDir _dir;
    private readonly ProcessTracker _processes = new();
    private readonly List<int> _daemons = [];

    private SlurmCluster(TempDir dir)
    {
        _dir = dir;
    }

    /// <summary>The cluster's folder (configuration, state, logs).</summary>
    public string Folder => _dir.Path;

    /// <summary>The slurm.conf every command of this cluster needs (<c>SLURM_CONF</c>).</summary>
    public string ConfFile => _dir.Combine("slurm.conf");

    /// <summary>The default partition.</summary>
    public string Partition => "debug";

    /// <summary>A second partition on the same node.</summary>
    public string OtherPartition => "render";

    /// <summary>How long the cluster took from nothing to an idle node.</summary>
    public TimeSpan StartupTime { get; private set; }

    /// <summary>Configures and starts the cluster; fails with the daemons' logs when it does not come up.</summary>
    public static async Task<SlurmCluster> StartAsync(SlurmClusterOptions? options = null)
    {
        options ??= new SlurmClusterOptions();
        const string install = "apt-get install -y slurm-wlm munge";
        var munged = Components.RequireExecutable("munged", install);
        var slurmctld = Components.RequireExecutable("slurmctld", install);
        var slurmd = Components.RequireExecutable("slurmd", install);
        Components.RequireExecutable("sbatch", install);
        var cluster = new SlurmCluster(new TempDir("slurm"));
        try
        {
            await cluster.StartCoreAsync(options, munged, slurmctld, slurmd);
            return cluster;
        }
        catch
        {
            await cluster.DisposeAsync();
            throw;
        }
    }

    /// <summary>Runs a Slurm command against this cluster.</summary>
    public async Task<(int ExitCode, string Output, string Error)> RunAsync(string command, params string[] arguments)
    {
        var info = new ProcessStartInfo(command) { RedirectStandardOutput = true, RedirectStandardError = true, RedirectStandardInput = true };
        foreach (var argument in arguments)
        {
            info.ArgumentList.Add(argument);
        }

        info.Environment["SLURM_CONF"] = ConfFile;
        using var process = Process.Start(info)!;
        process.StandardInput.Close();
        var output = process.StandardOutput.ReadToEndAsync();
        var error = process.StandardError.ReadToEndAsync();
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        await process.WaitForExitAsync(timeout.Token);
        return (process.ExitCode, await output, await error);
    }

    /// <summary>The tail of the daemons' logs, for failure messages.</summary>
    public string DescribeLogs()
    {
        var text = new StringBuilder();
        foreach (var file in new[] { "log/slurmctld.log", "log/slurmd.log", "munge/log/munged.log", "daemons.out" })
        {
            var path = _dir.Combine(file);
            if (File.Exists(path))
            {
                var lines = File.ReadAllLines(path);
                text.Append("\n--- ").Append(file).Append('\n').AppendJoin('\n', lines.Skip(Math.Max(0, lines.Length - 15)));
            }
        }

        return text.ToString();
    }

    public async ValueTask DisposeAsync()
    {
        if (_daemons.Count > 0)
        {
            try
            {
                await RunAsync(Components.FindOnPath("scontrol") ?? "scontrol", "shutdown");
            }
            catch (Exception ex) when (ex is InvalidOperationException or System.ComponentModel.Win32Exception or OperationCanceledException)
            {
            }

            var watch = Stopwatch.StartNew();
            while (_daemons.Skip(1).Any(ProcessTracker.IsAlive) && watch.Elapsed < TimeSpan.FromSeconds(10))
            {
                await Task.Delay(50);
            }
        }

        // Whatever is left (munged always), by its pid.
        _processes.Dispose();
        _dir.Dispose();
    }

    private async Task StartCoreAsync(SlurmClusterOptions options, string munged, string slurmctld, string slurmd)
    {
        var watch = Stopwatch.StartNew();
        var root = Environment.UserName == "root";
        foreach (var folder in new[] { "munge/etc", "munge/run", "munge/log", "state", "spool", "log", "run" })
        {
            Directory.CreateDirectory(_dir.Combine(folder));
        }

        // munged insists: key folder private to its user, socket folder open to everyone, nothing writable by others.
        File.SetUnixFileMode(_dir.Path, (UnixFileMode)0x1ED); // 0755
        var key = _dir.Combine("munge/etc/munge.key");
        await File.WriteAllBytesAsync(key, System.Security.Cryptography.RandomNumberGenerator.GetBytes(1024));
        File.SetUnixFileMode(key, UnixFileMode.UserRead);
        File.SetUnixFileMode(_dir.Combine("munge/etc"), UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
        File.SetUnixFileMode(_dir.Combine("munge/log"), UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
        var mungeUser = root && await RunQuietAsync("id", "-u", "munge") == 0;
        if (mungeUser)
        {
            await RunQuietAsync("chown", "-R", "munge:munge", _dir.Combine("munge"));
        }

        var socket = _dir.Combine("munge/run/munge.sock");
        string[] mungeArguments =
        [
            "-F", "--socket=" + socket, "--key-file=" + key, "--pid-file=" + _dir.Combine("munge/run/munged.pid"),
            "--log-file=" + _dir.Combine("munge/log/munged.log"), "--seed-file=" + _dir.Combine("munge/log/munged.seed"),
        ];
        Daemon(mungeUser ? "setpriv" : munged,
            mungeUser ? ["--reuid=munge", "--regid=munge", "--init-groups", munged, .. mungeArguments] : [.. mungeArguments, "--force"]);
        await WaitAsync(() => Task.FromResult(File.Exists(socket)), "munged to create its socket");

        var controllerPort = FreePort.Get();
        var nodePort = FreePort.Get();
        while (nodePort == controllerPort)
        {
            nodePort = FreePort.Get();
        }

        var user = Environment.UserName;
        var cpus = options.Cpus.ToString(CultureInfo.InvariantCulture);
        await File.WriteAllTextAsync(ConfFile, $"""
            ClusterName=farmtest
            SlurmctldHost=localhost
            SlurmUser={user}
            SlurmdUser={user}
            SlurmctldPort={controllerPort.ToString(CultureInfo.InvariantCulture)}
            SlurmdPort={nodePort.ToString(CultureInfo.InvariantCulture)}
            AuthType=auth/munge
            CredType=cred/munge
            AuthInfo=socket={socket}
            ProctrackType=proctrack/linuxproc
            TaskPlugin=task/none
            SelectType=select/cons_tres
            SelectTypeParameters=CR_Core
            SchedulerParameters=batch_sched_delay=0
            SlurmdParameters=config_overrides
            ReturnToService=2
            MailProg=/bin/true
            StateSaveLocation={_dir.Combine("state")}
            SlurmdSpoolDir={_dir.Combine("spool")}
            SlurmctldPidFile={_dir.Combine("run/slurmctld.pid")}
            SlurmdPidFile={_dir.Combine("run/slurmd.pid")}
            SlurmctldLogFile={_dir.Combine("log/slurmctld.log")}
            SlurmdLogFile={_dir.Combine("log/slurmd.log")}
            JobCompType=jobcomp/filetxt
            JobCompLoc={_dir.Combine("log/jobcomp.txt")}
            AccountingStorageType=accounting_storage/none
            MinJobAge=300
            KillWait=5
            MaxArraySize={options.MaxArraySize.ToString(CultureInfo.InvariantCulture)}
            NodeName=localhost NodeAddr=127.0.0.1 CPUs={cpus} State=UNKNOWN
            PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
            PartitionName=render Nodes=localhost MaxTime=INFINITE State=UP

            """);

        Daemon(slurmctld, ["-D", "-f", ConfFile]);
        await WaitAsync(async () => (await RunAsync("scontrol", "ping")).Output.Contains("is UP", StringComparison.Ordinal),
            "slurmctld to answer scontrol ping");
        Daemon(slurmd, ["-D", "-N", "localhost", "-f", ConfFile]);
        await WaitAsync(async () => (await RunAsync("sinfo", "-h", "-p", Partition, "-o", "%t")).Output.Trim() == "idle",
            "the node to be idle");
        StartupTime = watch.Elapsed;
    }

    private void Daemon(string executable, string[] arguments)
    {
        // Foreground daemons, so the pid we hold is the daemon's; their output goes to a file, not the test runner.
        var info = new ProcessStartInfo("/bin/sh") { UseShellExecute = false };
        info.ArgumentList.Add("-c");
        info.ArgumentList.Add("exec \"$@\" </dev/null >>\"$FARM_DAEMON_OUTPUT\" 2>&1");
        info.ArgumentList.Add("farm-slurm-daemon");
        info.ArgumentList.Add(executable);
        foreach (var argument in arguments)
        {
            info.ArgumentList.Add(argument);
        }

        info.Environment["FARM_DAEMON_OUTPUT"] = _dir.Combine("daemons.out");
        info.Environment["SLURM_CONF"] = ConfFile;
        using var process = _processes.Start(info);
        _daemons.Add(process.Id);
    }

    private async Task WaitAsync(Func<Task<bool>> ready, string what)
    {
        var watch = Stopwatch.StartNew();
        while (!await ready())
        {
            if (watch.Elapsed > TimeSpan.FromSeconds(30) || _daemons.Any(pid => !ProcessTracker.IsAlive(pid)))
            {
                throw new InvalidOperationException($"The private Slurm cluster did not come up: waited {watch.Elapsed.TotalSeconds:0.0} s for {what}.{DescribeLogs()}");
            }

            await Task.Delay(50);
        }
    }

    private static async Task<int> RunQuietAsync(string executable, params string[] arguments)
    {
        var info = new ProcessStartInfo(executable) { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var argument in arguments)
        {
            info.ArgumentList.Add(argument);
        }

        using var process = Process.Start(info)!;
        await process.StandardOutput.ReadToEndAsync();
        await process.StandardError.ReadToEndAsync();
        await process.WaitForExitAsync();
        return process.ExitCode;
    }
}
