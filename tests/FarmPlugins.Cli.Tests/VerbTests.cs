using System.Text.Json;
using FarmPlugins.TestSupport;
using Xunit;

namespace FarmPlugins.Cli.Tests;

/// <summary>Every verb's happy path against LocalQueue, in process; JSON parsed and checked for its documented fields.</summary>
[Collection(CliCollection.Name)]
public sealed class VerbTests(CliFixture farm)
{
    private static readonly string[] JobFields = ["id", "name", "state", "progress", "submittedAt", "startedAt", "completedAt", "submitter", "renderContextId"];

    private static JsonElement Json(CliResult result)
    {
        try
        {
            using var document = JsonDocument.Parse(result.Stdout);
            return document.RootElement.Clone();
        }
        catch (JsonException ex)
        {
            throw new Xunit.Sdk.XunitException($"stdout is not one JSON document ({ex.Message}):\n{result}");
        }
    }

    private static void AssertJob(JsonElement job)
    {
        foreach (var field in JobFields)
        {
            Assert.True(job.TryGetProperty(field, out _), $"the job JSON lacks '{field}': {job}");
        }

        foreach (var field in new[] { "total", "completed", "running", "failed" })
        {
            Assert.True(job.GetProperty("progress").TryGetProperty(field, out _), $"progress lacks '{field}'");
        }
    }

    private async Task<string> SubmitAsync(params string[] command)
    {
        var result = await farm.RunAsync(["submit", "--json", "--", .. command]);
        Assert.True(result.Code == 0, result.ToString());
        return Json(result).GetProperty("id").GetString()!;
    }

    [Fact]
    public async Task Plugins_Json_ListsLocalQueue_WithItsFields()
    {
        var result = await farm.RunAsync("plugins", "--json");

        Assert.True(result.Code == 0, result.ToString());
        var local = Json(result).EnumerateArray().Single(p => p.GetProperty("name").GetString() == "LocalQueue");
        Assert.Equal("2.0", local.GetProperty("apiVersion").GetString());
        Assert.Equal("available", local.GetProperty("status").GetString());
        Assert.StartsWith(farm.Resources, local.GetProperty("path").GetString());
    }

    [Fact]
    public async Task Config_ShowsEffectiveSettings_AndWhereEachCameFrom()
    {
        var result = await farm.RunAsync("config", "--set", "Agents=3", "--json");

        Assert.True(result.Code == 0, result.ToString());
        Assert.Contains("Agents", result.Stdout);
        Assert.Contains("IdleSeconds", result.Stdout);
        Assert.Contains("FARM_LOCALQUEUE_IDLESECONDS", result.Stdout);
    }

    [Fact]
    public async Task Test_RunsThePluginsChecks_AndExitsZero()
    {
        var result = await farm.RunAsync("test");

        Assert.True(result.Code == 0, result.ToString());
    }

    [Fact]
    public async Task Submit_Wait_ThenStatusJobsTasksLog_AllAnswerWithTheDocumentedJson()
    {
        var nonce = Guid.NewGuid().ToString("N");
        var submit = await farm.RunAsync("submit", "--json", "--wait", "--name", "hello", "--", "/bin/sh", "-c", $"echo {nonce}");
        Assert.True(submit.Code == 0, submit.ToString());
        var id = JsonDocument.Parse(submit.Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries)[0]).RootElement.GetProperty("id").GetString()!;

        var status = await farm.RunAsync("status", id, "--json");
        Assert.True(status.Code == 0, status.ToString());
        var job = Json(status);
        AssertJob(job);
        Assert.Equal("Completed", job.GetProperty("state").GetString());
        Assert.Equal("hello", job.GetProperty("name").GetString());

        var jobs = await farm.RunAsync("jobs", "--json", "--state", "Completed");
        Assert.True(jobs.Code == 0, jobs.ToString());
        var listed = Json(jobs).EnumerateArray().ToList();
        Assert.Contains(listed, j => j.GetProperty("id").GetString() == id);
        listed.ForEach(AssertJob);

        var tasks = await farm.RunAsync("tasks", id, "--json");
        Assert.True(tasks.Code == 0, tasks.ToString());
        var task = Assert.Single(Json(tasks).EnumerateArray());
        foreach (var field in new[] { "id", "labels", "state", "attempts", "node", "exitCode", "startedAt", "completedAt" })
        {
            Assert.True(task.TryGetProperty(field, out _), $"the task JSON lacks '{field}': {task}");
        }

        Assert.Equal(0, task.GetProperty("exitCode").GetInt32());

        var log = await farm.RunAsync("log", id);
        Assert.True(log.Code == 0, log.ToString());
        Assert.Contains(nonce, log.Stdout);
        var logJson = await farm.RunAsync("log", id, "--json");
        Assert.Contains(nonce, Json(logJson).GetProperty("text").GetString());

        var text = await farm.RunAsync("jobs");
        Assert.Contains(id, text.Stdout);
        Assert.Contains("Completed", text.Stdout);
    }

    [Fact]
    public async Task SubmitRequest_TheReadmeExample_StagesItsFile_AndRunsBothTasksInOrder()
    {
        var example = Path.Combine(farm.Repository, "samples", "requests", "hello.json");
        var result = await farm.RunAsync("submit", "--request", example, "--wait", "--json");

        Assert.True(result.Code == 0, result.ToString());
        var id = JsonDocument.Parse(result.Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries)[0]).RootElement.GetProperty("id").GetString()!;
        var log = await farm.RunAsync("log", id, "--task", "print");
        Assert.Contains("HELLO FARM from a request file", log.Stdout);
        var status = Json(await farm.RunAsync("status", id, "--json"));
        Assert.Equal("hello-request", status.GetProperty("name").GetString());
    }

    [Fact]
    public async Task LogFollow_EndsByItself_WhenTheJobEnds()
    {
        var id = await SubmitAsync("/bin/sh", "-c", "for i in 1 2 3 4 5; do echo tick $i; sleep 0.2; done");

        var result = await farm.RunAsync("log", id, "-f");

        Assert.True(result.Code == 0, result.ToString());
        Assert.Contains("tick 5", result.Stdout);
        var lines = await farm.RunAsync("log", id, "-f", "--json");
        var parsed = lines.Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(l => JsonDocument.Parse(l).RootElement).ToList();
        Assert.True(parsed[^1].GetProperty("complete").GetBoolean());
    }

    [Fact]
    public async Task Fetch_Twice_CopiesNothingTheSecondTime()
    {
        var request = Path.Combine(farm.DataDirectory, "outputs.json");
        await File.WriteAllTextAsync(request, """
            {"name": "outputs", "tasks": [{"id": "write", "outputs": ["out/a.txt", "out/b.txt"],
              "commands": [{"executable": "/bin/sh", "arguments": ["-c", "mkdir -p out; echo a > out/a.txt; echo b > out/b.txt"]}]}]}
            """);
        var submit = await farm.RunAsync("submit", "--request", request, "--wait", "--json");
        Assert.True(submit.Code == 0, submit.ToString());
        var id = JsonDocument.Parse(submit.Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries)[0]).RootElement.GetProperty("id").GetString()!;
        using var target = new TempDir("fetch");

        var first = await farm.RunAsync("fetch", id, "--out", target.Path, "--json");
        var second = await farm.RunAsync("fetch", id, "--out", target.Path, "--json");

        Assert.True(first.Code == 0, first.ToString());
        Assert.Equal(2, Json(first).GetProperty("written").GetArrayLength());
        Assert.Equal("a\n", await File.ReadAllTextAsync(target.Combine("out", "a.txt")));
        Assert.Equal(0, Json(second).GetProperty("written").GetArrayLength());
    }

    [Fact]
    public async Task RestartTask_RerunsOnlyThatTask()
    {
        var runs = Path.Combine(farm.DataDirectory, "runs-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(runs);
        var request = Path.Combine(runs, "two.json");
        await File.WriteAllTextAsync(request, $$"""
            {"name": "two", "tasks": [
              {"id": "a", "commands": [{"executable": "/bin/sh", "arguments": ["-c", "echo run >> {{runs}}/a"]}]},
              {"id": "b", "commands": [{"executable": "/bin/sh", "arguments": ["-c", "echo run >> {{runs}}/b"]}]}]}
            """);
        var submit = await farm.RunAsync("submit", "--request", request, "--wait", "--json");
        Assert.True(submit.Code == 0, submit.ToString());
        var id = JsonDocument.Parse(submit.Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries)[0]).RootElement.GetProperty("id").GetString()!;

        var restart = await farm.RunAsync("restart", id, "--task", "b");
        Assert.True(restart.Code == 0, restart.ToString());
        var wait = await farm.RunAsync("wait", id);

        Assert.True(wait.Code == 0, wait.ToString());
        Assert.Single(await File.ReadAllLinesAsync(Path.Combine(runs, "a")));
        Assert.Equal(2, (await File.ReadAllLinesAsync(Path.Combine(runs, "b"))).Length);
    }

    [Fact]
    public async Task Stop_ThenDelete_TheJobIsCancelled_ThenGone()
    {
        var id = await SubmitAsync("/bin/sh", "-c", "sleep 60");

        var stop = await farm.RunAsync("stop", id);
        Assert.True(stop.Code == 0, stop.ToString());
        var wait = await farm.RunAsync("wait", id, "--json");
        Assert.Equal(1, wait.Code);
        Assert.Equal("Cancelled", Json(wait).GetProperty("state").GetString());

        var delete = await farm.RunAsync("delete", id);
        Assert.True(delete.Code == 0, delete.ToString());
        var gone = await farm.RunAsync("status", id);
        Assert.Equal(3, gone.Code);
    }

    [Fact]
    public async Task Completion_PrintsAScript_ForBashAndZsh()
    {
        var bash = await farm.RunAsync("completion", "bash");
        var zsh = await farm.RunAsync("completion", "zsh");

        Assert.Equal(0, bash.Code);
        Assert.Contains("complete", bash.Stdout);
        Assert.Contains("render", bash.Stdout);
        Assert.Equal(0, zsh.Code);
        Assert.Contains("compdef", zsh.Stdout);
    }
}
