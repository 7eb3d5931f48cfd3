// A host in one file: list the plug-ins on the resources paths, load one, submit a one-task job, follow it to the end.
//   dotnet SampleHost.dll [--plugin NAME] [--resources PATH]...
// Exit codes: 0 the job completed; 1 it failed or was cancelled; 2 usage error; 3 plug-in or farm error.
using FarmApi;
using FarmApi.Hosting;
using Microsoft.Extensions.Logging;

string? pluginName = null;
var options = new FarmPluginManagerOptions();
for (var i = 0; i < args.Length; i++)
{
    switch (args[i])
    {
        case "--plugin" when i + 1 < args.Length:
            pluginName = args[++i];
            break;
        case "--resources" when i + 1 < args.Length:
            options.ResourcePaths.Add(args[++i]);
            break;
        default:
            Console.Error.WriteLine($"usage: SampleHost [--plugin NAME] [--resources PATH]... (unexpected '{args[i]}')");
            return 2;
    }
}

using var loggerFactory = LoggerFactory.Create(builder => builder.AddSimpleConsole().SetMinimumLevel(LogLevel.Warning));
options.LoggerFactory = loggerFactory;
await using var manager = new FarmPluginManager(options);
using var interrupt = new CancellationTokenSource();
Console.CancelKeyPress += (_, e) => { e.Cancel = true; interrupt.Cancel(); };

// 1. Discovery reads metadata only: no plug-in code runs yet.
Console.WriteLine($"Resources paths: {string.Join(Path.PathSeparator, manager.ResourcePaths)}");
foreach (var info in manager.GetPlugins())
{
    Console.WriteLine($"  {info.Name,-24} API {info.ApiVersion,-4} {info.Status,-12} {info.AssemblyPath}{(info.Error is null ? "" : $"\n      {info.Error}")}");
}

pluginName ??= manager.GetPlugins().FirstOrDefault(p => p.Status == FarmPluginStatus.Available)?.Name;
if (pluginName is null)
{
    Console.Error.WriteLine("No plug-in to load: drop one into <path>/Plugins/<Folder>/ and set FARM_RESOURCES (or pass --resources).");
    return 3;
}

try
{
    // 2. Load: the plug-in is constructed in its own load context and initialized with its merged settings.
    await using var farm = await manager.LoadAsync(pluginName, cancellationToken: interrupt.Token);
    Console.WriteLine($"Loaded {farm.Name}: capabilities {farm.Capabilities}");

    // 3. One render, in Katana's order: folder, files, installation, environment, submit.
    var render = new RenderContext(Guid.NewGuid(), RenderType.Disk, "sample-host");
    var folder = await farm.CreateTemporaryFolderAsync(render, interrupt.Token);
    var files = new List<string>();
    if (farm.Capabilities.HasFlag(FarmCapabilities.CopyFiles))
    {
        var scene = Path.Combine(Path.GetTempPath(), $"sample-scene-{render.Id:N}.txt");
        await File.WriteAllTextAsync(scene, "a scene to render\n", interrupt.Token);
        await farm.CopyRenderFilesAsync(render, folder, [new RenderFile(scene, "scene.txt")], cancellationToken: interrupt.Token);
        File.Delete(scene);
        files.Add("scene.txt");
    }

    var shell = await farm.GetInstallationMetadataAsync("command", interrupt.Token);
    var environment = await farm.GetJobEnvironmentAsync(render, interrupt.Token);
    var script = files.Count > 0 ? "wc -c < scene.txt > result.txt; echo rendered $(cat result.txt) bytes" : "echo rendered > result.txt; echo rendered";
    var jobId = await farm.SubmitJobAsync(new JobRequest
    {
        Context = render,
        Name = "sample-host job",
        TemporaryFolder = folder,
        Files = files,
        Environment = environment,
        Installations = new Dictionary<string, InstallationMetadata> { ["command"] = shell },
        Tasks = [new TaskSpec("render", [Command.Of("/bin/sh", "-c", script)], Outputs: ["result.txt"])],
    }, interrupt.Token);
    Console.WriteLine($"Submitted job {jobId}");

    // 4. Follow it: state and log until the job is terminal.
    long offset = 0;
    while (true)
    {
        var job = await farm.GetJobAsync(jobId, interrupt.Token);
        if (farm.Capabilities.HasFlag(FarmCapabilities.RenderLog))
        {
            var chunk = await farm.ReadRenderLogAsync(jobId, offset, interrupt.Token);
            Console.Write(chunk.Text);
            offset = chunk.NextOffset;
        }

        if (job.State.IsTerminal())
        {
            Console.WriteLine($"Job {jobId}: {job.State} ({job.Progress.CompletedTasks}/{job.Progress.TotalTasks} tasks)");
            return job.State == JobState.Completed ? 0 : 1;
        }

        await Task.Delay(TimeSpan.FromMilliseconds(200), interrupt.Token);
    }
}
catch (OperationCanceledException)
{
    Console.Error.WriteLine("interrupted");
    return 130;
}
catch (FarmPluginException ex)
{
    Console.Error.WriteLine(ex.Message);
    return 3;
}
