using FarmApi;
using FarmPlugins.TestSupport;
using Xunit;

namespace FarmPlugins.LocalQueue.Tests;

/// <summary>
/// Tasks claimed ahead (an agent takes a few short tasks of a job at once): the queue's side, driven directly with a
/// clock the test moves, so a lapse is decided by the test and not by timing.
/// </summary>
public sealed class LeaseAheadTests : IDisposable
{
    private static readonly TimeSpan Lease = TimeSpan.FromSeconds(30);
    private readonly TempDir _dir = new("leaseahead");
    private readonly ManualClock _clock = new();
    // As in real use: agents keep one connection with cached statements, hosts open one per call.
    private readonly QueueStore _store;
    private readonly QueueStore _host;

    public LeaseAheadTests()
    {
        _host = new QueueStore(_dir.Combine("queue.db"), _clock);
        _host.Initialize();
        _store = new QueueStore(_dir.Combine("queue.db"), _clock, keepConnection: true);
    }

    public void Dispose() => _dir.Dispose();

    private long Submit(int tasks, int maxAttempts = 1)
    {
        var request = new JobRequest
        {
            Context = RenderContext.Create("ahead"),
            Name = "ahead",
            TemporaryFolder = _dir.Path,
            MaxAttempts = maxAttempts,
            Tasks = [.. Enumerable.Range(0, tasks).Select(i => new TaskSpec($"t{i}", [Command.Of("true")]))],
        };
        return QueueStore.ParseJobId(_host.Submit(request, _dir.Path, "test").JobId)!.Value;
    }

    private JobState StateOf(long seq, string taskId) => _host.GetTasks(seq).Single(t => t.Info.Id == taskId).Info.State;

    [Fact]
    public void ABatchIsClaimedInOrder_AndReportedInOneCall()
    {
        var seq = Submit(5);

        var claimed = _store.ReportAndClaim([], "a", "node/a", Lease, 3);

        Assert.Equal(["t0", "t1", "t2"], claimed.Select(c => c.Spec.Id));
        Assert.All(claimed, c => Assert.Equal(1, c.Attempt));
        Assert.False(claimed[0].HasDependencies);
        var next = _store.ReportAndClaim([.. claimed.Select(c => new TaskReport(c, 0, 1000))], "a", "node/a", Lease, 3);
        Assert.Equal(["t3", "t4"], next.Select(c => c.Spec.Id));
        Assert.Empty(_store.ReportAndClaim([.. next.Select(c => new TaskReport(c, 0, 1000))], "a", "node/a", Lease, 3));
        Assert.Equal(JobState.Completed, _host.GetJob(seq)!.State);
        Assert.All(_host.GetTasks(seq), t => Assert.NotNull(t.Info.StartedAt));
    }

    [Fact]
    public void AnAgentLostWhileHoldingTasks_TheNeverStartedOnesComeBackWithoutAnAttempt_TheStartedOneCountsOne()
    {
        var seq = Submit(3, maxAttempts: 1);
        var held = _store.ReportAndClaim([], "lost", "node/lost", Lease, 3);
        // The first one ran long enough to have its process group recorded: it started.
        Assert.True(_store.SetProcessGroup(held[0], "lost", 999_999_999));

        _clock.Advance(Lease + TimeSpan.FromSeconds(1));
        var reclaimed = _store.ReportAndClaim([], "b", "node/b", Lease, 3);

        // t0 used its only attempt; t1 and t2 never ran and are claimed again as their first attempt.
        Assert.Equal(JobState.Failed, StateOf(seq, "t0"));
        Assert.Equal(["t1", "t2"], reclaimed.Select(c => c.Spec.Id));
        Assert.All(reclaimed, c => Assert.Equal(1, c.Attempt));
        // The lost agent's late reports are ignored: the attempts are b's now.
        _store.Report([.. held.Skip(1).Select(c => new TaskReport(c, 0, 1000))], "lost");
        Assert.Equal(JobState.Running, StateOf(seq, "t1"));
    }

    [Fact]
    public void AStoppedJob_TasksHeldAheadAreNoLongerHeld_AndTheirReportsAreIgnored()
    {
        var seq = Submit(4);
        var held = _store.ReportAndClaim([], "a", "node/a", Lease, 4);

        _host.Stop(seq);

        Assert.All(held, c => Assert.False(_store.StillHeld(c, "a")));
        _store.Report([new TaskReport(held[1], 0, 1000)], "a");
        Assert.Equal(JobState.Cancelled, _host.GetJob(seq)!.State);
        Assert.Equal(JobState.Cancelled, StateOf(seq, "t1"));
    }

    [Fact]
    public void ReleasedTasks_GoBackToTheQueue_WithoutAnAttempt()
    {
        var seq = Submit(3);
        var held = _store.ReportAndClaim([], "a", "node/a", Lease, 3);

        _store.Release(held.Skip(1).ToList(), "a");

        Assert.True(_store.StillHeld(held[0], "a"));
        var again = _store.ReportAndClaim([], "b", "node/b", Lease, 3);
        Assert.Equal(["t1", "t2"], again.Select(c => c.Spec.Id));
        Assert.All(again, c => Assert.Equal(1, c.Attempt));
        Assert.Equal(JobState.Running, _host.GetJob(seq)!.State);
    }

    [Fact]
    public void RenewAll_KeepsEveryHeldLeaseAlive()
    {
        var seq = Submit(3, maxAttempts: 1);
        _store.ReportAndClaim([], "a", "node/a", Lease, 3);

        _clock.Advance(Lease - TimeSpan.FromSeconds(1));
        _store.RenewAll("a", Lease);
        _clock.Advance(TimeSpan.FromSeconds(5));

        Assert.Empty(_store.ReportAndClaim([], "b", "node/b", Lease, 3));
        Assert.All(_host.GetTasks(seq), t => Assert.Equal(JobState.Running, t.Info.State));
    }

    private sealed class ManualClock : TimeProvider
    {
        private DateTimeOffset _now = DateTimeOffset.UtcNow;

        public void Advance(TimeSpan by) => _now += by;

        public override DateTimeOffset GetUtcNow() => _now;
    }
}
