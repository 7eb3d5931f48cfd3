using FarmApi;

namespace FarmPlugins.Qarnot;

/// <summary>One Qarnot task of a job (a "part": a dependency level, or a restart of some of its instances).</summary>
internal sealed record Part(QarnotTask Task, Guid ContextId, int Number, int Level, int TotalTasks, HashSet<int> Indices);

/// <summary>Where one of the request's tasks (one instance id) stands: its latest part decides.</summary>
internal sealed record InstanceView(int Index, JobState State, int Attempts, Part? Part);

/// <summary>The job's state and progress computed from its parts, the way Qarnot reports them.</summary>
internal sealed class JobView
{
    private readonly Dictionary<int, InstanceView> _instances = [];
    private readonly Dictionary<string, JobState?> _blocked = new(StringComparer.Ordinal);
    private readonly Dictionary<string, Part> _byUuid;

    private JobView(IReadOnlyList<Part> parts)
    {
        Parts = parts;
        _byUuid = parts.GroupBy(p => p.Task.Uuid, StringComparer.Ordinal).ToDictionary(g => g.Key, g => g.First(), StringComparer.Ordinal);
    }

    public IReadOnlyList<Part> Parts { get; }

    public JobState State { get; private set; }

    public JobProgress Progress { get; private set; } = new(0, 0, 0, 0);

    public DateTimeOffset? StartedAt { get; private set; }

    public DateTimeOffset? CompletedAt { get; private set; }

    public static JobView Build(IReadOnlyList<Part> parts)
    {
        var view = new JobView([.. parts.OrderBy(p => p.Number)]);
        view.Compute();
        return view;
    }

    public InstanceView Instance(int index) => _instances.TryGetValue(index, out var instance) ? instance : new InstanceView(index, JobState.Waiting, 0, null);

    /// <summary>Whether a part waits on a part that failed or was cancelled: Qarnot never runs it.</summary>
    public bool IsBlocked(Part part) => BlockedBy(part, 0) is not null;

    private JobState? BlockedBy(Part part, int depth)
    {
        if (_blocked.TryGetValue(part.Task.Uuid, out var known))
        {
            return known;
        }

        JobState? result = null;
        if (!QarnotStates.IsTerminal(part.Task.State) && depth < 64)
        {
            foreach (var uuid in part.Task.Dependencies?.DependsOn ?? [])
            {
                if (!_byUuid.TryGetValue(uuid, out var dependency))
                {
                    continue;
                }

                var state = dependency.Task.State;
                result = QarnotStates.Is(state, QarnotStates.Failure) ? JobState.Failed
                    : QarnotStates.Is(state, QarnotStates.Cancelled) || QarnotStates.Is(state, QarnotStates.PendingCancel) ? JobState.Cancelled
                    : BlockedBy(dependency, depth + 1);
                if (result is not null)
                {
                    break;
                }
            }
        }

        _blocked[part.Task.Uuid] = result;
        return result;
    }

    private void Compute()
    {
        var total = Parts.Max(p => Math.Max(p.TotalTasks, p.Indices.Count == 0 ? 0 : p.Indices.Max() + 1));
        var attempts = new Dictionary<int, int>();
        foreach (var part in Parts)
        {
            foreach (var index in part.Indices)
            {
                var (state, ran) = StateIn(part, index);
                if (ran)
                {
                    attempts[index] = attempts.GetValueOrDefault(index) + 1;
                }

                _instances[index] = new InstanceView(index, state, attempts.GetValueOrDefault(index), part);
            }
        }

        var states = Enumerable.Range(0, total).Select(i => Instance(i).State).ToList();
        var completed = states.Count(s => s == JobState.Completed);
        var running = states.Count(s => s == JobState.Running);
        var failed = states.Count(s => s == JobState.Failed);
        Progress = new JobProgress(total, completed, running, failed);
        if (running > 0)
        {
            State = JobState.Running;
        }
        else if (states.Contains(JobState.Waiting))
        {
            State = states.Any(s => s.IsTerminal()) ? JobState.Running : JobState.Waiting;
        }
        else
        {
            State = states.Contains(JobState.Cancelled) ? JobState.Cancelled : failed > 0 ? JobState.Failed : JobState.Completed;
        }

        var started = Parts.Where(p => p.Indices.Any(i => Instance(i).Attempts > 0)).Select(p => p.Task.CreationDate).OfType<DateTimeOffset>().ToList();
        StartedAt = started.Count > 0 ? started.Min() : null;
        var ended = Parts.Select(p => p.Task.Ended).OfType<DateTimeOffset>().ToList();
        CompletedAt = ended.Count > 0 ? ended.Max() : null;
    }

    private (JobState State, bool Ran) StateIn(Part part, int index)
    {
        var task = part.Task;
        var done = task.CompletedInstances?.LastOrDefault(c => c.InstanceId == index);
        if (done is not null)
        {
            return (QarnotStates.Is(done.State, QarnotStates.Success) ? JobState.Completed
                : QarnotStates.Is(done.State, QarnotStates.Cancelled) ? JobState.Cancelled
                : JobState.Failed, true);
        }

        if (InstanceRanges.Parse(task.Status?.SucceededRange).Contains(index))
        {
            return (JobState.Completed, true);
        }

        if (InstanceRanges.Parse(task.Status?.FailedRange).Contains(index))
        {
            return (JobState.Failed, true);
        }

        var running = task.Status?.RunningInstancesInfo?.PerRunningInstanceInfo?.Any(r => r.InstanceId == index) == true;

        var cancelling = QarnotStates.Is(task.State, QarnotStates.Cancelled) || QarnotStates.Is(task.State, QarnotStates.PendingCancel)
            || QarnotStates.Is(task.State, QarnotStates.PendingDelete);
        if (cancelling)
        {
            return (JobState.Cancelled, running);
        }

        if (running)
        {
            return (JobState.Running, true);
        }

        if (QarnotStates.Is(task.State, QarnotStates.Failure))
        {
            return (JobState.Failed, false);
        }

        if (QarnotStates.Is(task.State, QarnotStates.Success))
        {
            return (JobState.Completed, false);
        }

        return (BlockedBy(part, 0) ?? JobState.Waiting, false);
    }
}
