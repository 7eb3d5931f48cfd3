using FarmPlugins.Tools;

return await FarmToolsCommand.RunAsync(args, Console.Out, Console.Error).ConfigureAwait(false);
