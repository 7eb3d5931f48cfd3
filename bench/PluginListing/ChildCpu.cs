using System.Runtime.InteropServices;

namespace FarmPlugins.Bench.PluginListing;

/// <summary>CPU time used by this process's waited-for children (getrusage RUSAGE_CHILDREN): steadier than wall time on a busy machine.</summary>
internal static partial class ChildCpu
{
    public static double Milliseconds()
    {
        if (GetRUsage(-1, out var usage) != 0)
        {
            return double.NaN;
        }

        return (usage.UserSeconds + usage.SystemSeconds) * 1000.0 + (usage.UserMicroseconds + usage.SystemMicroseconds) / 1000.0;
    }

    [DllImport("libc", EntryPoint = "getrusage")]
    private static extern int GetRUsage(int who, out RUsage usage);

    [StructLayout(LayoutKind.Sequential)]
    private struct RUsage
    {
        public long UserSeconds;
        public long UserMicroseconds;
        public long SystemSeconds;
        public long SystemMicroseconds;
        public long MaxRss, Ixrss, Idrss, Isrss, Minflt, Majflt, Nswap, Inblock, Oublock, Msgsnd, Msgrcv, Nsignals, Nvcsw, Nivcsw;
    }
}
