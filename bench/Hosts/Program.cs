// Figures for the host side (issue 4): a 24-frame POV-Ray animation on 2 agents against the ideal, and one large
// frame whole on one agent against 2x2 tiles on two. The farm is loaded by name through FarmPluginManager, like
// any host does. Usage (after building the plug-ins into out/resources):
//   dotnet run -c Release --project bench/Hosts -- [--plugin LocalQueue] [--agents-setting Agents] [--set k=v ...] [--rounds N] [ANIMATION_WxH] [LARGE_WxH]
using FarmApi.Hosting;
using FarmPlugins.Bench.Hosts;

var plugin = "LocalQueue";
var agentsSetting = "Agents";
var overrides = new Dictionary<string, string>(StringComparer.OrdinalIgnoreCase);
var sizes = new List<string>();
var peerOnly = false;
var rounds = 3;
for (var i = 0; i < args.Length; i++)
{
    switch (args[i])
    {
        case "--plugin":
            plugin = args[++i];
            break;
        case "--rounds":
            rounds = int.Parse(args[++i], System.Globalization.CultureInfo.InvariantCulture);
            break;
        case "--peer-only":
            peerOnly = true;
            break;
        case "--agents-setting":
            agentsSetting = args[++i];
            break;
        case "--set":
            var pair = args[++i].Split('=', 2);
            overrides[pair[0]] = pair[1];
            break;
        default:
            sizes.Add(args[i]);
            break;
    }
}

var managers = new List<FarmPluginManager>();
try
{
    return await Bench.RunAsync(
        peerOnly ? null : async (agents, data) =>
        {
            var environment = Environment.GetEnvironmentVariables().Cast<System.Collections.DictionaryEntry>()
                .ToDictionary(e => (string)e.Key, e => (string?)e.Value ?? string.Empty);
            environment["FARM_DATA"] = data;
            var manager = new FarmPluginManager(new FarmPluginManagerOptions { Environment = environment });
            manager.Options.ResourcePaths.Add(Path.Combine(Bench.RepoRoot, "out", "resources"));
            managers.Add(manager);
            return await manager.LoadAsync(plugin, new Dictionary<string, string>(overrides) { [agentsSetting] = agents.ToString(System.Globalization.CultureInfo.InvariantCulture) });
        },
        plugin,
        [.. sizes],
        rounds);
}
finally
{
    foreach (var manager in managers)
    {
        await manager.DisposeAsync();
    }
}
