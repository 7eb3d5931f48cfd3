using System.CommandLine;
using Command = System.CommandLine.Command;
using System.Text.Json;
using FarmApi;

namespace FarmPlugins.Cli.Verbs;

/// <summary><c>farm submit</c>: a one-task job from a command line, or a whole job from a JSON request file.</summary>
internal sealed class SubmitVerb : Verb
{
    private readonly Option<string?> _name = new("--name", "-n") { Description = "The job's name." };
    private readonly Option<bool> _wait = new("--wait", "-w") { Description = "Wait for the job to end (exit 0 completed, 1 not)." };
    private readonly Option<string?> _request = new("--request", "-r") { Description = "A whole JobRequest as JSON (see HostAdapters/Cli/README.md)." };
    private readonly Option<int> _priority = new("--priority") { Description = "0-100, higher first.", DefaultValueFactory = _ => 50 };
    private readonly Argument<string[]> _command = new("command") { Description = "The command and its arguments, after --.", Arity = ArgumentArity.ZeroOrMore };

    protected override Command Create()
    {
        var command = new Command("submit", Describe("Submit a one-task job running a command, or a whole job from a JSON request file.",
            "farm submit --name hello --wait -- /bin/sh -c 'echo hello'   |   farm submit --request job.json"));
        command.Add(_name);
        command.Add(_wait);
        command.Add(_request);
        command.Add(_priority);
        command.Add(_command);
        return command;
    }

    protected override async Task<int> RunAsync(ParseResult parse, CliSession session, CancellationToken cancellationToken)
    {
        var requestFile = parse.GetValue(_request);
        var words = parse.GetValue(_command) ?? [];
        if (requestFile is null && words.Length == 0)
        {
            throw new UsageException("Give a command after -- (farm submit -- /bin/echo hi) or a request file (--request job.json).");
        }

        if (requestFile is not null && words.Length > 0)
        {
            throw new UsageException("Give either a command after -- or --request FILE, not both.");
        }

        var document = requestFile is null ? null : RequestDocument.Load(requestFile);
        var plugin = await session.PluginAsync(cancellationToken).ConfigureAwait(false);
        var name = parse.GetValue(_name) ?? document?.Name ?? Path.GetFileName(words[0]);
        var context = new RenderContext(document?.RenderContextId ?? Guid.NewGuid(), RenderType.Disk, name);
        var folder = await plugin.CreateTemporaryFolderAsync(context, cancellationToken).ConfigureAwait(false);
        var files = new List<string>();
        if (document is { Files.Count: > 0 })
        {
            var baseFolder = Path.GetDirectoryName(Path.GetFullPath(requestFile!))!;
            var renderFiles = document.Files.Select(f => new RenderFile(Path.Combine(baseFolder, f), f)).ToList();
            var view = ProgressView.For(session);
            await plugin.CopyRenderFilesAsync(context, folder, renderFiles, view, cancellationToken).ConfigureAwait(false);
            view.Finish();
            files.AddRange(document.Files);
        }

        var environment = new Dictionary<string, string>(document?.Environment ?? [], StringComparer.Ordinal);
        foreach (var (key, value) in await plugin.GetJobEnvironmentAsync(context, cancellationToken).ConfigureAwait(false))
        {
            environment.TryAdd(key, value);
        }

        var request = new JobRequest
        {
            Context = context,
            Name = name,
            TemporaryFolder = folder,
            Files = files,
            Tasks = document?.ToTasks() ?? [new TaskSpec("command", [new FarmApi.Command(words[0], words[1..])])],
            Environment = environment,
            Priority = document?.Priority ?? parse.GetValue(_priority),
            MaxAttempts = document?.MaxAttempts ?? 3,
            Labels = document?.Labels ?? [],
            Settings = document?.Settings ?? [],
        };
        var jobId = await plugin.SubmitJobAsync(request, cancellationToken).ConfigureAwait(false);
        if (session.Json)
        {
            session.WriteJsonLine(new { id = jobId });
        }
        else
        {
            session.Say(jobId);
        }

        return parse.GetValue(_wait) ? await JobWaiter.WaitAsync(session, plugin, jobId, cancellationToken).ConfigureAwait(false) : ExitCodes.Success;
    }
}

/// <summary>The JSON form of a job request that <c>farm submit --request</c> reads (camelCase).</summary>
public sealed class RequestDocument
{
    /// <summary>The job's name.</summary>
    public string? Name { get; set; }

    /// <summary>A render context id to reuse (submitting again returns the same job); a new one when absent.</summary>
    public Guid? RenderContextId { get; set; }

    /// <summary>0-100.</summary>
    public int? Priority { get; set; }

    /// <summary>Attempts per task.</summary>
    public int? MaxAttempts { get; set; }

    /// <summary>Files to stage, relative to the request file's folder; each lands at the same relative path in the job folder.</summary>
    public List<string> Files { get; set; } = [];

    /// <summary>Environment variables for every task.</summary>
    public Dictionary<string, string>? Environment { get; set; }

    /// <summary>Labels for people.</summary>
    public Dictionary<string, string>? Labels { get; set; }

    /// <summary>Farm-specific settings.</summary>
    public Dictionary<string, string>? Settings { get; set; }

    /// <summary>The tasks.</summary>
    public List<TaskDocument> Tasks { get; set; } = [];

    /// <summary>Reads and checks a request file.</summary>
    /// <param name="path">The file.</param>
    /// <returns>The document.</returns>
    public static RequestDocument Load(string path)
    {
        if (!File.Exists(path))
        {
            throw new FileNotFoundException($"The request file {path} does not exist.", path);
        }

        RequestDocument? document;
        try
        {
            document = JsonSerializer.Deserialize<RequestDocument>(File.ReadAllText(path), CliSession.JsonOptions);
        }
        catch (JsonException ex)
        {
            throw new UsageException($"The request file {path} is not valid: {ex.Message}");
        }

        if (document is null || document.Tasks.Count == 0)
        {
            throw new UsageException($"The request file {path} has no tasks.");
        }

        return document;
    }

    /// <summary>The tasks as <see cref="TaskSpec"/>s.</summary>
    /// <returns>The tasks.</returns>
    public IReadOnlyList<TaskSpec> ToTasks() => Tasks.Select((t, i) => new TaskSpec(
        t.Id ?? $"task{i}",
        t.Commands.Select(c => new FarmApi.Command(c.Executable ?? string.Empty, c.Arguments ?? [])).ToList(),
        t.DependsOn,
        t.Outputs,
        t.Host ?? "command",
        t.TimeoutSeconds is { } seconds ? TimeSpan.FromSeconds(seconds) : null,
        t.Labels)).ToList();
}

/// <summary>A task of a <see cref="RequestDocument"/>.</summary>
public sealed class TaskDocument
{
    /// <summary>Unique within the job.</summary>
    public string? Id { get; set; }

    /// <summary>Run in order in the job folder.</summary>
    public List<CommandDocument> Commands { get; set; } = [];

    /// <summary>Tasks that must complete first.</summary>
    public List<string>? DependsOn { get; set; }

    /// <summary>Files the task must leave behind.</summary>
    public List<string>? Outputs { get; set; }

    /// <summary>The software the task needs (command, povray, blender, farm-tools).</summary>
    public string? Host { get; set; }

    /// <summary>Per attempt.</summary>
    public double? TimeoutSeconds { get; set; }

    /// <summary>Labels.</summary>
    public Dictionary<string, string>? Labels { get; set; }
}

/// <summary>A command of a <see cref="TaskDocument"/>.</summary>
public sealed class CommandDocument
{
    /// <summary>The executable.</summary>
    public string? Executable { get; set; }

    /// <summary>Its arguments, each passed as it is (no shell).</summary>
    public List<string>? Arguments { get; set; }
}
