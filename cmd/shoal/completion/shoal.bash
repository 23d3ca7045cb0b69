# bash completion for shoal. Install:
#   shoal completion bash > /etc/bash_completion.d/shoal
# shoal completes itself: at each TAB this asks the binary (urfave/cli's
# --generate-bash-completion) for the subcommands, or with a word starting
# with "-" for the flags, of the command line so far. zsh users can load
# it through bashcompinit.
_shoal() {
	local cur=${COMP_WORDS[COMP_CWORD]}
	local -a args=("${COMP_WORDS[@]:0:COMP_CWORD}")
	if [[ $cur == -* ]]; then
		args+=("$cur")
	fi
	local IFS=$'\n'
	COMPREPLY=($(compgen -W "$("${args[@]}" --generate-bash-completion 2>/dev/null)" -- "$cur"))
}
complete -o bashdefault -o default -F _shoal shoal
