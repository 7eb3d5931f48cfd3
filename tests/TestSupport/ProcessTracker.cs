using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Runtime.InteropServices;

namespace FarmPlugins.TestSupport;

/// <summary>Remembers the processes a test starts and kills each by its pid (and its process group) on dispose.</summary>
public sealed class ProcessTracker : IDisposable
{
    private readonly List<int> _pids = [];
    private readonly object _gate = new();

    public void Track(int pid)
    {
        lock (_gate)
        {
            _pids.Add(pid);
        }
    }

    public Process Start(ProcessStartInfo info)
    {
        var process = Process.Start(info) ?? throw new InvalidOperationException($"Could not start {info.FileName}.");
        Track(process.Id);
        return process;
    }

    /// <summary>Also tracks pids read later from pid files (daemons that fork).</summary>
    public void TrackPidFile(string path)
    {
        if (File.Exists(path) && int.TryParse(File.ReadAllText(path).Trim(), out var pid))
        {
            Track(pid);
        }
    }

    public static bool IsAlive(int pid) => kill(pid, 0) == 0;

    public static void Kill(int pid, int signal = 9)
    {
        _ = kill(pid, signal);
    }

    public void Dispose()
    {
        int[] pids;
        lock (_gate)
        {
            pids = [.. _pids];
            _pids.Clear();
        }

        foreach (var pid in pids)
        {
            // The group first (agents run their tasks in groups of their own), then the process itself.
            _ = kill(-pid, 9);
            _ = kill(pid, 9);
        }
    }

    [DllImport("libc", SetLastError = true)]
    private static extern int kill(int pid, int sig);
}

/// <summary>Free TCP ports on 127.0.0.1.</summary>
public static class FreePort
{
    public static int Get()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }
}
