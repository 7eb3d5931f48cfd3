using System.CommandLine;
using Command = System.CommandLine.Command;
using FarmApi;
using FarmApi.Hosting;

namespace FarmPlugins.Cli.Verbs;

/// <summary><c>farm plugins</c>: the plug-ins on the resources paths, broken ones with their reason.</summary>
internal sealed class PluginsVerb : Verb
{
    private readonly Option<bool> _load = new("--load") { Description = "Also construct and initialize each plug-in, reporting failures." };

    protected override Command Create()
    {
        var command = new Command("plugins", Describe("List the farm plug-ins found on FARM_RESOURCES.", "farm plugins --load"));
        command.Add(_load);
        return command;
    }

    protected override async Task<int> RunAsync(ParseResult parse, CliSession session, CancellationToken cancellationToken)
    {
        var rows = new List<PluginJson>();
        foreach (var info in session.Manager.GetPlugins())
        {
            var status = info.Status.ToString().ToLowerInvariant();
            var error = info.Error;
            if (parse.GetValue(_load) && info.Status == FarmPluginStatus.Available)
            {
                try
                {
                    var plugin = await session.Manager.LoadAsync(info.Name, session.Overrides, cancellationToken).ConfigureAwait(false);
                    await plugin.DisposeAsync().ConfigureAwait(false);
                    status = "loaded";
                }
                catch (FarmPluginException ex)
                {
                    status = "broken";
                    error = ex.Message;
                }
            }

            rows.Add(new PluginJson(info.Name, info.ApiVersion, info.AssemblyPath, status, error, info.Description));
        }

        foreach (var diagnostic in session.Manager.Diagnostics.Where(d => rows.All(r => r.Path != d.Path)))
        {
            rows.Add(new PluginJson(diagnostic.PluginName ?? Path.GetFileName(diagnostic.Path), string.Empty, diagnostic.Path, "broken", diagnostic.Reason, null));
        }

        if (session.Json)
        {
            session.WriteJson(rows);
            return ExitCodes.Success;
        }

        if (rows.Count == 0)
        {
            session.Say($"No plug-in found. Resources paths searched: {string.Join(", ", session.Manager.ResourcePaths.DefaultIfEmpty("(none: set FARM_RESOURCES)"))}");
            return ExitCodes.Success;
        }

        session.Say(Text.Table(["NAME", "API", "STATUS", "PATH"], rows.Select(r => (IReadOnlyList<string>)[r.Name, r.ApiVersion, r.Status, r.Path])));
        foreach (var row in rows.Where(r => r.Error is not null))
        {
            session.Say($"  {row.Name}: {row.Error}");
        }

        return ExitCodes.Success;
    }
}

/// <summary>A plug-in as <c>farm plugins --json</c> prints it.</summary>
/// <param name="Name">The registered name.</param>
/// <param name="ApiVersion">Its API version.</param>
/// <param name="Path">Its assembly.</param>
/// <param name="Status">available, loaded, broken, incompatible or duplicate.</param>
/// <param name="Error">Why it cannot be used.</param>
/// <param name="Description">What it is.</param>
public sealed record PluginJson(string Name, string ApiVersion, string Path, string Status, string? Error, string? Description);

/// <summary><c>farm test</c>: the plug-in's own checks against its farm.</summary>
internal sealed class TestVerb : Verb
{
    protected override Command Create() =>
        new("test", Describe("Check that the farm is reachable and usable with the current settings.", "farm test --plugin LocalQueue"));

    protected override async Task<int> RunAsync(ParseResult parse, CliSession session, CancellationToken cancellationToken)
    {
        var plugin = await session.PluginAsync(cancellationToken).ConfigureAwait(false);
        var report = await plugin.TestAsync(cancellationToken).ConfigureAwait(false);
        if (session.Json)
        {
            session.WriteJson(new { plugin = plugin.Name, passed = report.Passed, checks = report.Checks });
        }
        else
        {
            foreach (var check in report.Checks)
            {
                session.Say($"{(check.Passed ? "ok  " : "FAIL")}  {check.Name}: {check.Detail}");
            }

            session.Say(report.Passed ? $"{plugin.Name}: all checks passed" : $"{plugin.Name}: some checks failed");
        }

        return report.Passed ? ExitCodes.Success : ExitCodes.JobFailed;
    }
}

/// <summary><c>farm config</c>: the effective settings and where each came from.</summary>
internal sealed class ConfigVerb : Verb
{
    protected override Command Create() =>
        new("config", Describe("Show the plug-in's effective settings and where each came from (secrets as ***).", "farm config --plugin LocalQueue --set Agents=4"));

    protected override async Task<int> RunAsync(ParseResult parse, CliSession session, CancellationToken cancellationToken)
    {
        var settings = await session.Manager.GetEffectiveSettingsAsync(session.PluginName, session.Overrides, cancellationToken).ConfigureAwait(false);
        if (session.Json)
        {
            session.WriteJson(settings.Select(s => new { key = s.Key, value = s.Value, source = s.Source, secret = s.IsSecret, description = s.Description }));
            return ExitCodes.Success;
        }

        session.Say($"{session.PluginName} (data: {session.Manager.GetDataDirectory(session.PluginName)})");
        session.Say(Text.Table(["KEY", "VALUE", "SOURCE"], settings.Select(s => (IReadOnlyList<string>)[s.Key, s.Value.Length == 0 ? "-" : s.Value, s.Source])));
        return ExitCodes.Success;
    }
}
