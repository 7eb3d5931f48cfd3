using Microsoft.Extensions.Logging.Abstractions;
using Moq;
using Moq.Protected;
using Xunit;

namespace FarmApi.Tests.Validation;

/// <summary>
/// An invalid request never reaches the adapter: the public wrapper throws an <see cref="ArgumentException"/> naming the
/// field, and Moq verifies the adapter's Core hook was never called.
/// </summary>
public sealed class SubmitValidationTests
{
    private static readonly RenderContext Render = new(Guid.NewGuid(), RenderType.Disk, "validation");

    private static TaskSpec Task(string id, params string[] dependsOn) =>
        new(id, [Command.Of("/bin/true")], DependsOn: dependsOn.Length == 0 ? null : dependsOn);

    private static JobRequest Valid() => new()
    {
        Context = Render,
        Name = "valid",
        TemporaryFolder = "/farm/jobs/1",
        Files = ["scene.pov", "textures/wood.png"],
        Tasks = [Task("tile-0"), Task("tile-1"), new TaskSpec("merge", [Command.Of("farm-tools", "merge")], ["tile-0", "tile-1"], ["out/frame.png"])],
    };

    /// <summary>Each invalid request, by name: how it is broken and the field the error must name.</summary>
    private static readonly Dictionary<string, (Func<JobRequest, JobRequest> Break, string Field)> Cases = new()
    {
        ["empty tasks"] = (r => r with { Tasks = [] }, "Tasks"),
        ["duplicate task ids"] = (r => r with { Tasks = [Task("a"), Task("b"), Task("a")] }, "Tasks[2].Id"),
        ["unknown dependency"] = (r => r with { Tasks = [Task("a"), Task("b", "a", "nowhere")] }, "Tasks[1].DependsOn[1]"),
        ["self dependency"] = (r => r with { Tasks = [Task("a", "a")] }, "Tasks[0].DependsOn[0]"),
        ["dependency cycle"] = (r => r with { Tasks = [Task("a", "c"), Task("b", "a"), Task("c", "b")] }, "Tasks.DependsOn"),
        ["'..' in Files"] = (r => r with { Files = ["scene.pov", "../secrets.txt"] }, "Files[1]"),
        ["'..' inside a Files path"] = (r => r with { Files = ["textures/../../escape.png"] }, "Files[0]"),
        ["absolute path in Files"] = (r => r with { Files = ["/etc/passwd"] }, "Files[0]"),
        ["Windows absolute path in Files"] = (r => r with { Files = ["C:\\scenes\\a.pov"] }, "Files[0]"),
        ["'..' in Outputs"] = (r => r with { Tasks = [new TaskSpec("a", [Command.Of("/bin/true")], Outputs: ["../frame.png"])] }, "Tasks[0].Outputs[0]"),
        ["absolute path in Outputs"] = (r => r with { Tasks = [new TaskSpec("a", [Command.Of("/bin/true")], Outputs: ["ok.png", "/tmp/frame.png"])] }, "Tasks[0].Outputs[1]"),
        ["priority 101"] = (r => r with { Priority = 101 }, "Priority"),
        ["priority -1"] = (r => r with { Priority = -1 }, "Priority"),
        ["MaxAttempts 0"] = (r => r with { MaxAttempts = 0 }, "MaxAttempts"),
        ["empty executable"] = (r => r with { Tasks = [new TaskSpec("a", [Command.Of(" ")])] }, "Tasks[0].Commands[0].Executable"),
        ["zero timeout"] = (r => r with { Tasks = [new TaskSpec("a", [Command.Of("/bin/true")], Timeout: TimeSpan.Zero)] }, "Tasks[0].Timeout"),
    };

    public static TheoryData<string> CaseNames => new(Cases.Keys);

    private static async Task<Mock<BaseFarmPlugin>> NewAdapterAsync()
    {
        var adapter = new Mock<BaseFarmPlugin> { CallBase = true };
        adapter.Protected()
            .Setup<Task<string>>("SubmitJobCoreAsync", ItExpr.IsAny<JobRequest>(), ItExpr.IsAny<CancellationToken>())
            .ReturnsAsync("job-1");
        await adapter.Object.InitializeAsync(new FarmPluginContext
        {
            PluginName = "Mocked Farm",
            LoggerFactory = NullLoggerFactory.Instance,
            Settings = new Dictionary<string, string>(),
            DataDirectory = Path.GetTempPath(),
        });
        return adapter;
    }

    private static void VerifySubmitCore(Mock<BaseFarmPlugin> adapter, Times times) =>
        adapter.Protected().Verify("SubmitJobCoreAsync", times, ItExpr.IsAny<JobRequest>(), ItExpr.IsAny<CancellationToken>());

    [Fact]
    public async Task ValidRequest_ReachesTheAdapter()
    {
        var adapter = await NewAdapterAsync();

        Assert.Equal("job-1", await adapter.Object.SubmitJobAsync(Valid()));

        VerifySubmitCore(adapter, Times.Once());
    }

    [Theory]
    [MemberData(nameof(CaseNames))]
    public async Task InvalidRequest_ThrowsArgumentExceptionNamingTheField_AndNeverCallsTheAdapter(string name)
    {
        var (breakIt, field) = Cases[name];
        var adapter = await NewAdapterAsync();

        var error = await Assert.ThrowsAsync<ArgumentException>(() => adapter.Object.SubmitJobAsync(breakIt(Valid())));

        Assert.Equal(field, error.ParamName);
        Assert.StartsWith(field + ": ", error.Message);
        VerifySubmitCore(adapter, Times.Never());
    }

    [Fact]
    public void Validator_AgreesWithTheWrapper_SoHostsCanCheckBeforeStaging()
    {
        foreach (var (name, (breakIt, field)) in Cases)
        {
            var found = JobRequestValidator.FindError(breakIt(Valid()));
            Assert.True(found is not null, name);
            Assert.Equal(field, found!.Value.Field);
        }

        Assert.Null(JobRequestValidator.FindError(Valid()));
    }

    [Theory]
    [InlineData("../scene.pov")]
    [InlineData("/abs/scene.pov")]
    [InlineData("a/../../scene.pov")]
    public async Task CopyRenderFiles_WithAPathThatEscapes_ThrowsNamingTheFile_AndNeverCallsTheAdapter(string relativePath)
    {
        var adapter = await NewAdapterAsync();
        var local = Path.GetTempFileName();
        try
        {
            var error = await Assert.ThrowsAsync<ArgumentException>(() =>
                adapter.Object.CopyRenderFilesAsync(Render, "/farm/jobs/1", [new RenderFile(local, "ok.pov"), new RenderFile(local, relativePath)]));

            Assert.StartsWith("files[1].RelativePath: ", error.Message);
            adapter.Protected().Verify("CopyRenderFilesCoreAsync", Times.Never(), ItExpr.IsAny<RenderContext>(), ItExpr.IsAny<string>(),
                ItExpr.IsAny<IReadOnlyList<RenderFile>>(), ItExpr.IsAny<IProgress<TransferProgress>?>(), ItExpr.IsAny<CancellationToken>());
        }
        finally
        {
            File.Delete(local);
        }
    }

    [Theory]
    [InlineData(3)]
    [InlineData(1000)]
    public async Task CopyRenderFiles_WithMissingLocalFiles_NamesTheFirstInListOrder_AndNeverCallsTheAdapter(int count)
    {
        // Above a few hundred files the existence checks run side by side; the error is still the first in the list.
        var adapter = await NewAdapterAsync();
        var local = Path.GetTempFileName();
        try
        {
            var files = Enumerable.Range(0, count).Select(i => new RenderFile(local, $"f{i}.bin")).ToArray();
            var firstMissing = count - 2;
            files[firstMissing] = new RenderFile(local + ".missing-a", $"f{firstMissing}.bin");
            files[count - 1] = new RenderFile(local + ".missing-b", $"f{count - 1}.bin");

            var error = await Assert.ThrowsAsync<ArgumentException>(() => adapter.Object.CopyRenderFilesAsync(Render, "/farm/jobs/1", files));

            Assert.StartsWith($"files[{firstMissing}].LocalPath: '{local}.missing-a' does not exist", error.Message);
            adapter.Protected().Verify("CopyRenderFilesCoreAsync", Times.Never(), ItExpr.IsAny<RenderContext>(), ItExpr.IsAny<string>(),
                ItExpr.IsAny<IReadOnlyList<RenderFile>>(), ItExpr.IsAny<IProgress<TransferProgress>?>(), ItExpr.IsAny<CancellationToken>());
        }
        finally
        {
            File.Delete(local);
        }
    }
}
