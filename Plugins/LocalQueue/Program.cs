namespace FarmPlugins.LocalQueue;

/// <summary>The agent executable: <c>dotnet FarmPlugins.LocalQueue.dll agent --data DIR --id ID [--heartbeat S --lease S --idle S --poll S]</c>.</summary>
internal static class Program
{
    public static async Task<int> Main(string[] args)
    {
        if (args.Length == 0 || args[0] != "agent")
        {
            await Console.Error.WriteLineAsync("usage: dotnet FarmPlugins.LocalQueue.dll agent --data DIR [--id ID] [--heartbeat S] [--lease S] [--idle S] [--poll S]")
                .ConfigureAwait(false);
            return 2;
        }

        return await Agent.MainAsync(args[1..]).ConfigureAwait(false);
    }
}
