using System.Globalization;

namespace FarmPlugins.LocalQueue;

/// <summary>Where LocalQueue keeps things under its data directory.</summary>
internal sealed class LocalQueuePaths
{
    public const string WakeFileName = "wake";

    public LocalQueuePaths(string root)
    {
        Root = Path.GetFullPath(root);
    }

    public string Root { get; }

    public string Database => Path.Combine(Root, "queue.db");

    public string Jobs => Path.Combine(Root, "jobs");

    public string Logs => Path.Combine(Root, "logs");

    public string Blobs => Path.Combine(Root, "blobs");

    public string HashCache => Path.Combine(Root, "hash-cache.tsv");

    public string Agents => Path.Combine(Root, "agents");

    public string AgentsLock => Path.Combine(Root, "agents.lock");

    /// <summary>
    /// The folder agents watch for the wake file: a folder of its own, since the data directory's database and its WAL
    /// change on every transaction and a watch there woke every agent for each of them.
    /// </summary>
    public string WakeFolder => Path.Combine(Root, "wake.d");

    public string Wake => Path.Combine(WakeFolder, WakeFileName);

    public string JobLogFolder(long seq) => Path.Combine(Logs, seq.ToString(CultureInfo.InvariantCulture));

    public string JobLog(long seq) => Path.Combine(JobLogFolder(seq), "job.log");

    public string TaskLog(long seq, string taskId) => Path.Combine(JobLogFolder(seq), "tasks", taskId + ".log");

    public string AgentPidFile(string agentId) => Path.Combine(Agents, agentId + ".pid");

    public string AgentOutput(string agentId) => Path.Combine(Agents, agentId + ".out");
}
