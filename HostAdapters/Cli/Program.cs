namespace FarmPlugins.Cli;

/// <summary>The <c>farm</c> executable.</summary>
internal static class Program
{
    public static async Task<int> Main(string[] args)
    {
        using var interrupt = new CancellationTokenSource();
        Console.CancelKeyPress += (_, e) =>
        {
            // The first Ctrl+C cancels cleanly (exit 130); a second one ends the process.
            e.Cancel = !interrupt.IsCancellationRequested;
            interrupt.Cancel();
        };
        return await FarmCli.RunAsync(args, Console.Out, Console.Error, interrupt.Token).ConfigureAwait(false);
    }
}
