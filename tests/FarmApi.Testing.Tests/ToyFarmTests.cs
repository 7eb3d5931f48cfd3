using FarmPlugins.TestSupport;
using Xunit;

namespace FarmApi.Testing.Tests;

/// <summary>The kit against a toy: internal, so xUnit does not run it as a test class of its own.</summary>
internal sealed class ToyConformance(Func<Task<BaseFarmPlugin>> factory) : FarmConformanceTests
{
    protected override Task<BaseFarmPlugin> CreatePluginAsync(CancellationToken cancellationToken) => factory();

    protected override TimeSpan JobTimeout => TimeSpan.FromSeconds(20);
}

public sealed class ToyFarmTests : IDisposable
{
    private readonly TempDir _data = new("toyfarm");

    public void Dispose() => _data.Dispose();

    private ToyConformance Kit(ToyFarm.Store? shared)
    {
        return new ToyConformance(() => ToyFarm.CreateAsync(shared ?? new ToyFarm.Store(), _data.Path));
    }

    public static TheoryData<string> Checks() =>
    [
        nameof(FarmConformanceTests.DependentTasks_PassANonce_AndTheJobCompletes),
        nameof(FarmConformanceTests.StagedInput_ReachesTheTask_Intact),
        nameof(FarmConformanceTests.FailingCommand_FailsTheJob_WithItsExitCode),
        nameof(FarmConformanceTests.MissingDeclaredOutput_FailsTheTask),
        nameof(FarmConformanceTests.SameRenderContext_SubmittedTwice_IsOneJob),
        nameof(FarmConformanceTests.GetJobs_HonoursStateRenderContextAndLimit),
    ];

    private static Task Run(FarmConformanceTests kit, string check) =>
        (Task)typeof(FarmConformanceTests).GetMethod(check)!.Invoke(kit, null)!;

    [Theory]
    [MemberData(nameof(Checks))]
    public async Task AToyThatKeepsJobsInMemory_FailsTheKit(string check)
    {
        var kit = Kit(shared: null);
        await kit.InitializeAsync();
        try
        {
            var error = await Record.ExceptionAsync(() => Run(kit, check));
            Assert.NotNull(error);
        }
        finally
        {
            await kit.DisposeAsync();
        }
    }

    [Theory]
    [MemberData(nameof(Checks))]
    public async Task TheSameToyWithADurableStore_PassesTheseChecks(string check)
    {
        // The control: the failures above come from the lost jobs, not from checks that fail everything.
        var kit = Kit(new ToyFarm.Store());
        await kit.InitializeAsync();
        try
        {
            await Run(kit, check);
        }
        finally
        {
            await kit.DisposeAsync();
        }
    }

    [Fact]
    public async Task TheKit_RefusesAFactoryThatReturnsTheSameInstance()
    {
        var store = new ToyFarm.Store();
        var single = await ToyFarm.CreateAsync(store, _data.Path);
        var kit = new ToyConformance(() => Task.FromResult(single));
        await kit.InitializeAsync();
        try
        {
            var error = await Record.ExceptionAsync(kit.DependentTasks_PassANonce_AndTheJobCompletes);
            Assert.NotNull(error);
        }
        finally
        {
            await kit.DisposeAsync();
        }
    }
}
